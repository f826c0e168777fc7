"""One contender process: a real LeaderElector that records its history as JSON lines.

Every line has ``t`` (``time.monotonic()``: CLOCK_MONOTONIC is host-wide, so all
contenders share one clock), ``pid`` and ``ev``. While leading it acts every ~100 ms:
check ``is_leader``, record ``act``, then a fenced write guarded by the term's token.
After a pause (a loop gap over a second) it also tries one write with the *stale* term,
bypassing the local check, to show that etcd itself rejects it.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from typing import IO, Any

from leaderelect import EtcdError, LeaderElector, Term, election

PERIOD = 0.1


class History:
    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self._lock = threading.Lock()

    def log(self, ev: str, **fields: Any) -> None:
        line = json.dumps({"t": time.monotonic(), "pid": os.getpid(), "ev": ev, **fields})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


def _gil_hog(stop: threading.Event, seconds: float) -> None:
    """Hold the GIL in pure Python for *seconds* at a time, every other second."""
    while not stop.wait(1.0):
        end = time.monotonic() + seconds
        x = 0
        while time.monotonic() < end:
            for i in range(10_000):
                x += i


def _stale_write(elector: LeaderElector, term: Term, data_key: str, history: History) -> None:
    """Send the old term's fenced write, bypassing the local check (3 tries: the connection
    may be re-established right after a pause)."""
    for _ in range(3):
        try:
            accepted = election.fenced_txn(
                elector._session.client, term.key.encode(), term.fencing_token, {data_key.encode(): b"stale"}, []
            )
        except EtcdError as err:
            history.log("fenced_write", token=term.fencing_token, accepted=False, stale=True, error=str(err)[:200])
            continue
        history.log("fenced_write", token=term.fencing_token, accepted=accepted, stale=True)
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--ttl", type=int, default=2)
    parser.add_argument("--guard", type=float, default=None)
    parser.add_argument("--unsafe-guard", action="store_true", help="allow a negative guard (negative control)")
    parser.add_argument("--call-timeout", type=float, default=1.0)
    parser.add_argument("--keepalive-time", type=float, default=6.0, help="0 turns gRPC keepalive off")
    parser.add_argument("--history", required=True)
    parser.add_argument("--data-key", default=None, help="the key fenced writes go to")
    parser.add_argument("--gil-hog", type=float, default=0.0, help="hold the GIL this long every other second")
    args = parser.parse_args(argv)

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to stderr
    history = History(args.history)
    elector = LeaderElector(
        args.name,
        f"pid-{os.getpid()}",
        endpoints=args.endpoints,
        ttl=args.ttl,
        guard=args.guard,
        call_timeout=args.call_timeout,
        keepalive_time=args.keepalive_time or None,
        _allow_unsafe_guard=args.unsafe_guard,
    )
    elector.on_elected(lambda term: history.log("elected", token=term.fencing_token, valid_until=term.valid_until))
    elector.on_demoted(lambda term, reason: history.log("demoted", token=term.fencing_token, reason=str(reason)))
    elector.on_leader_changed(
        lambda leader: history.log(
            "leader_changed", token=leader.token if leader else None, value=leader.value if leader else None
        )
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hog_stop = threading.Event()
    if args.gil_hog > 0:
        threading.Thread(target=_gil_hog, args=(hog_stop, args.gil_hog), name="gil-hog", daemon=True).start()
    data_key = args.data_key or f"{args.name}-data"
    history.log("start", ttl=args.ttl)
    elector.start()
    last_term: Term | None = None
    last_loop = time.monotonic()
    try:
        while not stop.wait(PERIOD):
            now = time.monotonic()
            current = elector.term
            ended = current is None or last_term is None or current.fencing_token != last_term.fencing_token
            if now - last_loop > 1.0 and last_term is not None and ended:
                # We were paused. Try the stale term's write straight at etcd: it must be rejected.
                history.log("resumed", gap=now - last_loop, is_leader=elector.is_leader)
                _stale_write(elector, last_term, data_key, history)
            last_loop = now
            term = elector.term
            if term is None:
                continue
            last_term = term
            history.log("act", token=term.fencing_token, valid_until=term.valid_until)
            try:
                accepted = elector.fenced_put(data_key, f"{os.getpid()}:{term.fencing_token}", term=term)
            except Exception as err:  # an unreachable etcd: the write is neither accepted nor lost
                history.log("fenced_write", token=term.fencing_token, accepted=False, error=str(err)[:200])
                continue
            history.log("fenced_write", token=term.fencing_token, accepted=accepted)
    finally:
        hog_stop.set()
        elector.stop()
        history.log("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
