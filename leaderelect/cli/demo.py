"""``make demo``: a throwaway etcd, three candidate processes, a handoff and a crash."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from leaderelect._etcd import Endpoint, EtcdClient
from leaderelect.election import Candidate, participants
from leaderelect.testing import EtcdServer, wait_until


def spawn_candidate(name: str, value: str, endpoints: str, ttl: int) -> subprocess.Popen[str]:
    """Start ``leaderelect candidate`` in a child process (stdout: JSON lines)."""
    cmd = [
        sys.executable,
        "-m",
        "leaderelect",
        "candidate",
        name,
        "--value",
        value,
        "--endpoints",
        endpoints,
        "--ttl",
        str(ttl),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


class _Events:
    """Collects the candidates' JSON lines from their stdout."""

    def __init__(self) -> None:
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()

    def follow(self, label: str, proc: subprocess.Popen[str]) -> None:
        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                event["who"] = label
                self.queue.put(event)

        threading.Thread(target=read, name=f"demo-read-{label}", daemon=True).start()

    def next_elected(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if event["ev"] == "elected":
                return event


def _wait_queue(endpoint: str, size: int) -> list[Candidate]:
    """Wait (30 s at most) until *size* candidates are queued, so the handoff has a successor."""
    client = EtcdClient([Endpoint("127.0.0.1", int(endpoint.rsplit(":", 1)[1]))], keepalive_time=None)
    try:
        found: list[Candidate] = []

        def queued() -> bool:
            found[:] = participants(client, "demo")[0]
            return len(found) >= size

        if not wait_until(queued, 30, interval=0.05):
            raise TimeoutError(f"only {len(found)} of {size} candidates joined the election")
        return found
    finally:
        client.close()


def run_demo(ttl: int) -> int:
    print(f"Starting a throwaway etcd and three candidates (ttl {ttl} s)...", flush=True)
    events = _Events()
    procs: dict[str, subprocess.Popen[str]] = {}
    with EtcdServer() as etcd:
        print(f"  etcd serving on {etcd.endpoint} (data in {etcd.data_dir})")
        try:
            for label in ("alpha", "bravo", "charlie"):
                procs[label] = spawn_candidate("demo", label, etcd.endpoint, ttl)
                events.follow(label, procs[label])
            first = events.next_elected(30)
            queue_ = _wait_queue(etcd.endpoint, 3)
            print(f"\n1. {first['who']} (pid {first['pid']}) leads, fencing token {first['token']}. The queue:")
            for position, candidate in enumerate(queue_, start=1):
                print(f"   {position}. {candidate.value:8} key {candidate.key}  create revision {candidate.token}")

            print(f"\n2. Graceful handoff: SIGTERM to {first['who']}; it stops, resigns, and the next one leads.")
            t0 = time.monotonic()
            procs[first["who"]].send_signal(signal.SIGTERM)
            second = events.next_elected(30)
            print(
                f"   {second['who']} leads, token {second['token']}, "
                f"{(second['t'] - t0) * 1000:.1f} ms after the signal."
            )

            print(f"\n3. Crash: kill -9 {second['who']}; its lease expires (ttl {ttl} s) and the last one leads.")
            t0 = time.monotonic()
            procs[second["who"]].kill()
            third = events.next_elected(ttl + 10)
            print(
                f"   {third['who']} leads, token {third['token']}, "
                f"{third['t'] - t0:.2f} s after the kill (ttl {ttl} s + etcd's expiry scan)."
            )
            print("\nTokens only grow:", first["token"], "<", second["token"], "<", third["token"])
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        print("\nStopped the candidates and the throwaway etcd. Done.")
    return 0
