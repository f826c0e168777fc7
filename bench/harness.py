"""The bench harness: child processes whose output lines are stamped on arrival, waits
without polling, a bare watch for the floor, etcd's own metrics, summaries and the machine.

Every time is on ``leaderelect.clock()``, the host-wide clock of the deadlines, so times read
in different processes compare without clock sync.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import __version__ as protobuf_version

import leaderelect
from leaderelect import clock
from leaderelect._etcd import EtcdClient, pb, prefix_end
from leaderelect.testing import EtcdServer, find_etcd, wait_until

HERE = Path(__file__).parent
T = TypeVar("T")
QUICK = os.environ.get("QUICK") == "1"


def n(full: int, quick: int) -> int:
    return quick if QUICK else full


def summary(values: list[float], scale: float = 1000.0) -> dict[str, Any]:
    """median, p90, p99, max (in ms by default) and the number of trials."""
    if not values:
        return {"trials": 0}
    ordered = sorted(v * scale for v in values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return {
        "median": round(statistics.median(ordered), 3),
        "p90": round(pct(0.9), 3),
        "p99": round(pct(0.99), 3),
        "max": round(ordered[-1], 3),
        "min": round(ordered[0], 3),
        "trials": len(ordered),
    }


# Every Proc's reader thread notifies this when a line arrives: waits block on it, no polling.
_arrived = threading.Condition()


class Proc:
    """A child process whose stdout lines are collected with ``rx``, their arrival time here.

    JSON lines (worker.py's protocol) become events as sent, plus ``rx``; other lines
    (``json_lines=False``, e.g. etcdctl) become ``{"ev": "line", "line": ..., "t": rx, "rx": rx}``.
    """

    def __init__(self, cmd: list[str], *, json_lines: bool = True) -> None:
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self.events: list[dict[str, Any]] = []
        self._json = json_lines
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        # a blocking read per line: the stamp is taken as soon as the line is readable
        for line in self.proc.stdout:
            rx = clock()
            if self._json:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                event["rx"] = rx
            else:
                event = {"ev": "line", "line": line.rstrip("\n"), "t": rx, "rx": rx}
            with _arrived:
                self.events.append(event)
                _arrived.notify_all()

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def find(self, ev: str, after: float = 0.0, **match: Any) -> dict[str, Any] | None:
        with _arrived:
            for event in self.events:
                if event["ev"] == ev and event["t"] > after and all(event.get(k) == v for k, v in match.items()):
                    return event
        return None

    def wait(self, ev: str, after: float = 0.0, timeout: float = 30.0, **match: Any) -> dict[str, Any] | None:
        return wait_for(lambda: self.find(ev, after, **match), timeout)

    def received(self) -> list[dict[str, Any]]:
        """The events so far (a copy, taken under the lock the reader thread appends under)."""
        with _arrived:
            return list(self.events)

    def leads(self) -> bool:
        turns = [e for e in self.received() if e["ev"] in ("elected", "demoted")]
        return self.proc.poll() is None and bool(turns) and turns[-1]["ev"] == "elected"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(cmd="quit")
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()


def wait_for(found: Callable[[], T | None], timeout: float) -> T | None:
    """Block until *found()* (evaluated whenever a Proc receives a line) is truthy; its value, or None."""
    with _arrived:
        return _arrived.wait_for(found, timeout) or None


def first_elected(procs: list[Proc], after: float, timeout: float) -> dict[str, Any] | None:
    """The first ``elected`` event (by arrival here) after *after* among *procs* (waits for one)."""

    def any_elected() -> dict[str, Any] | None:
        found = [e for p in procs if (e := p.find("elected", after)) is not None]
        return min(found, key=lambda e: e["rx"]) if found else None

    return wait_for(any_elected, timeout)


def step_down(
    workers: list[Proc], cmd: str, call_ev: str
) -> tuple[Proc, float, dict[str, Any] | None, dict[str, Any] | None] | None:
    """Ask the leading worker to step down: (that leader, the moment this process sent the
    command, the leader's call event, the successor's elected event), or None when no worker
    leads right now (after waiting for one). The handoff time is ``elected["rx"] - sent``."""
    leader = next((w for w in workers if w.leads()), None)
    if leader is None:
        wait_until(lambda: any(w.leads() for w in workers), 10)
        return None
    sent = clock()
    leader.send(cmd=cmd)
    call = leader.wait(call_ev, after=sent)
    return leader, sent, call, first_elected([w for w in workers if w is not leader], sent, 5)


def crash_failovers(
    workers: list[Proc],
    respawn: Callable[[int], Proc],
    settled: Callable[[], bool],
    ttl: float,
    trials: int,
    each: Callable[[float, dict[str, Any]], None],
) -> None:
    """``kill -9`` the leading worker's process *trials* times, once *settled()* and someone
    leads; each time a fresh ``respawn(i)`` replaces it in *workers*. ``each(the moment of the
    kill, the survivor's elected event)`` runs right after every trial that got a successor
    within ttl + 10 s (so what it reads is as of that trial)."""
    for i in range(trials):
        wait_until(lambda: settled() and any(w.leads() for w in workers), 30)
        leader = next((w for w in workers if w.leads()), None)
        if leader is None:
            continue
        t0 = clock()
        leader.proc.kill()
        leader.proc.wait()
        survivor = next(w for w in workers if w is not leader)
        elected = survivor.wait("elected", after=t0, timeout=ttl + 10)
        if elected:
            each(t0, elected)
        workers.remove(leader)
        workers.append(respawn(i))


def etcd_metrics(etcd: EtcdServer) -> dict[str, float]:
    """etcd's Prometheus /metrics as {series: value} (labels kept in the series name)."""
    with urllib.request.urlopen(f"http://{etcd.endpoint}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    return values


def etcd_watchers(etcd: EtcdServer) -> tuple[float, float]:
    """(watchers, unsynced watchers) from etcd's /metrics.

    A watch created at a revision etcd already has (as etcd's Go client does for the key it
    waits on: ``WithRev(resp.Header.Revision)``) starts "unsynced"; etcd only delivers its events
    from ``syncWatchersLoop``, which runs every 100 ms (server/mvcc/watchable_store.go). A handoff
    to a candidate whose watch is still unsynced measures that tick, not the handoff: wait
    until etcd reports none before timing one.
    """
    values = etcd_metrics(etcd)
    return (
        values.get("etcd_debugging_mvcc_watcher_total", 0.0),
        values.get("etcd_debugging_mvcc_slow_watcher_total", 0.0),
    )


def grpc_messages_received(etcd: EtcdServer) -> float:
    """Every gRPC message etcd has received, over all methods."""
    return sum(v for series, v in etcd_metrics(etcd).items() if series.startswith("grpc_server_msg_received_total"))


def watchers_synced(etcd: EtcdServer) -> bool:
    return etcd_watchers(etcd)[1] == 0


def worker(name: str, endpoints: str, ttl: int = 2, count: int = 1, tag: str = "w") -> Proc:
    return Proc(
        [
            sys.executable,
            str(HERE / "worker.py"),
            "--name",
            name,
            "--endpoints",
            endpoints,
            "--ttl",
            str(ttl),
            "--count",
            str(count),
            "--tag",
            tag,
        ]
    )


class RawWatch:
    """A bare watch on a prefix in this process, on a gRPC stream of its own: the floor that
    leaderelect adds to (leaderelect's shared streams add a thread hop)."""

    def __init__(self, client: EtcdClient, prefix: bytes) -> None:
        rev = client.range(b"\0", timeout=2).header.revision
        self.events: list[tuple[float, int, str]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._channel = grpc.insecure_channel(client.current_endpoint.target)
        create = pb.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix), start_revision=rev + 1)

        def requests() -> Iterator[pb.WatchRequest]:
            yield pb.WatchRequest(create_request=create)
            self._done.wait()

        watch = self._channel.stream_stream(
            "/etcdserverpb.Watch/Watch",
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchResponse.FromString,
        )
        self._call = watch(requests())
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for response in self._call:
                t = clock()
                with self._lock:
                    self.events += [(t, e.type, e.kv.key.decode()) for e in response.events]
        except grpc.RpcError:
            return

    def received(self) -> list[tuple[float, int, str]]:
        """(arrival time, event type, key) of every event so far (a copy)."""
        with self._lock:
            return list(self.events)

    def deleted_after(self, t0: float) -> tuple[float, str] | None:
        with self._lock:
            for t, kind, key in self.events:
                if t > t0 and kind == pb.Event.DELETE:
                    return t, key
        return None

    def close(self) -> None:
        self._done.set()
        self._call.cancel()
        self._channel.close()


# -- processes: CPU and memory ------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the report's header ------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    etcd_version = subprocess.run([find_etcd(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": protobuf_version,
        "leaderelect": leaderelect.__version__,
        "etcd": etcd_version,
        "quick": QUICK,
    }


@contextmanager
def timed(results: dict[str, Any], key: str) -> Iterator[None]:
    t0 = clock()
    print(f"- {key} ...", flush=True)
    yield
    print(f"  {key}: {clock() - t0:.0f} s", flush=True)
