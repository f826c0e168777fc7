"""A benchmark worker: K electors in one process, driven over stdin, reporting on stdout.

Every event is a JSON line with ``t`` on ``leaderelect.clock()`` (host-wide). Commands (JSON
lines on stdin): ``{"cmd": "resign"}`` makes the local leader resign (``"cooldown"``
optional), ``{"cmd": "stop_leader"}`` stops it, ``{"cmd": "quit"}`` stops everything.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from leaderelect import LeaderElector, clock

_lock = threading.Lock()


def emit(**fields: Any) -> None:
    line = json.dumps({"t": clock(), **fields})
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def serve_peer(step_down: threading.Event, quit_: threading.Event) -> None:
    """A peer worker's command loop: "resign" and "stop_leader" set *step_down* (the peer's
    leader returns from its leadership), "quit" or the end of stdin sets *quit_*."""
    emit(ev="ready")
    for line in sys.stdin:
        cmd = json.loads(line)["cmd"]
        if cmd == "quit":
            break
        if cmd in ("resign", "stop_leader"):
            emit(ev="resign_call")
            step_down.set()
    quit_.set()
    step_down.set()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--ttl", type=int, default=2)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--tag", default="w")
    parser.add_argument(
        "--observe-only",
        action="store_true",
        help="electors that never campaign are not possible; this flag just reports leader changes and never resigns",
    )
    args = parser.parse_args()
    electors = []
    for i in range(args.count):
        e = LeaderElector(args.name, f"{args.tag}-{i}", endpoints=args.endpoints, ttl=args.ttl, call_timeout=2.0)
        e.on_elected(lambda term, i=i: emit(ev="elected", i=i, token=term.token))
        e.on_demoted(
            lambda term, reason, i=i: emit(
                ev="demoted", i=i, token=term.token, reason=str(reason), valid_until=term.valid_until
            )
        )
        if i == 0:
            e.on_leader_changed(lambda leader: emit(ev="leader_changed", value=leader.value if leader else None))
        electors.append(e)
    for e in electors:
        e.start()
    emit(ev="ready", count=args.count)
    for line in sys.stdin:
        cmd = json.loads(line)
        leader = next((e for e in electors if e.is_leader), None)
        if cmd["cmd"] == "quit":
            break
        if leader is None:
            emit(ev="no_leader_here")
            continue
        if cmd["cmd"] == "resign":
            emit(ev="resign_call")
            leader.resign(cooldown=float(cmd.get("cooldown", 0)))
        elif cmd["cmd"] == "stop_leader":
            emit(ev="stop_call")
            leader.stop()
    for e in electors:
        e.stop()
    emit(ev="quit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
