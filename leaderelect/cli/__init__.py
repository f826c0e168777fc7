"""The ``leaderelect`` command line (also ``python -m leaderelect``).

``demo`` runs a throwaway etcd and three candidate processes and shows a graceful handoff
and a crash failover with their timings; ``status`` and ``observe`` look at an election.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

from leaderelect import election
from leaderelect._clock import clock
from leaderelect.elector import LeaderElector
from leaderelect.exceptions import ConfigurationError, LeaderElectError
from leaderelect.term import Leader


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoints",
        default=os.environ.get("LEADERELECT_ENDPOINTS", "127.0.0.1:2379"),
        help="etcd members, host:port[,host:port] (env LEADERELECT_ENDPOINTS)",
    )
    parser.add_argument("--ttl", type=int, default=10, help="lease TTL in whole seconds (default 10)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leaderelect", description="Leader election on etcd v3.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a throwaway etcd, three candidates, a handoff and a crash failover")
    demo.add_argument("--ttl", type=int, default=2, help="lease TTL of the candidates (default 2)")
    status = sub.add_parser("status", help="print the leader and the queue; exit 3 when there is no leader")
    status.add_argument("name")
    _connection(status)
    observe = sub.add_parser("observe", help="print leader changes as they happen")
    observe.add_argument("name")
    observe.add_argument("--json", action="store_true", help="one JSON object per line")
    _connection(observe)
    run = sub.add_parser(
        "run",
        help="run a command only while this process leads",
        description="Campaign; run CMD in its own process group while leading; on demotion "
        "SIGTERM the group, then SIGKILL after --grace. Exits with CMD's exit code when CMD "
        "ends by itself.",
    )
    run.add_argument("name")
    run.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (default 10)")
    run.add_argument("--value", default=None, help="what this candidate proclaims (default host:pid)")
    _connection(run)
    cand = sub.add_parser("candidate", help="campaign and report events as JSON lines (used by the demo)")
    cand.add_argument("name")
    cand.add_argument("--value", default=None)
    _connection(cand)
    argv = list(sys.argv[1:] if argv is None else argv)
    # everything after the first "--" is the command of `run`, whatever options it has
    command: list[str] = []
    if "--" in argv:
        command, argv = argv[argv.index("--") + 1 :], argv[: argv.index("--")]
    args = parser.parse_args(argv)
    args.cmd = command
    level = getattr(logging, os.environ.get("LEADERELECT_LOG", "WARNING").upper(), logging.WARNING)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            from leaderelect.cli.demo import run_demo

            return run_demo(args.ttl)
        if args.command == "status":
            return _status(args)
        if args.command == "observe":
            return _observe(args)
        if args.command == "run":
            return _run(args)
        return _candidate(args)
    except ConfigurationError as err:
        print(f"leaderelect: {err}", file=sys.stderr)
        return 2
    except LeaderElectError as err:
        print(f"leaderelect: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from leaderelect.cli.run import Runner

    command = args.cmd
    if not command:
        print("leaderelect run: give the command after --", file=sys.stderr)
        return 2
    elector = LeaderElector(
        args.name, args.value, endpoints=args.endpoints, ttl=args.ttl, demote_timeout=args.grace + 6
    )
    return Runner(elector, command, args.grace).run()


def _status(args: argparse.Namespace) -> int:
    elector = LeaderElector(args.name, endpoints=args.endpoints, ttl=args.ttl)
    try:
        queue_, revision = election.participants(elector.session.client, args.name)
    finally:
        elector.stop()
    if not queue_:
        print(f"{args.name}: no leader (revision {revision})")
        return 3
    print(f"{args.name}: leader {queue_[0].value!r} token {queue_[0].token} key {queue_[0].key}")
    for position, candidate in enumerate(queue_[1:], start=2):
        print(f"  {position}. {candidate.value!r} token {candidate.token} key {candidate.key}")
    return 0


def _describe(leader: Leader | None) -> dict[str, Any]:
    if leader is None:
        return {"leader": None}
    return {"leader": leader.value, "key": leader.key, "token": leader.token}


def _observe(args: argparse.Namespace) -> int:
    from leaderelect._observer import Observer

    elector = LeaderElector(args.name, endpoints=args.endpoints, ttl=args.ttl)
    changes: queue.Queue[Leader | None] = queue.Queue()
    shown: list[tuple[str, int, bytes] | None] = [("", -1, b"")]

    def on_view(view: Any) -> None:
        leader = view.leader if view.known else None
        key = (leader.key, leader.token, leader.raw_value) if leader else None
        if key != shown[0]:
            shown[0] = key
            changes.put(leader)

    observer = Observer(elector.session.client, args.name, on_view, probe_interval=2.0)
    observer.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            try:
                leader = changes.get(timeout=0.2)
            except queue.Empty:
                continue
            if args.json:
                print(json.dumps({"t": time.time(), **_describe(leader)}), flush=True)
            else:
                print(f"{args.name}: {leader.value if leader else '(no leader or unknown)'}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        observer.close(2)
        elector.stop()
    return 0


def _candidate(args: argparse.Namespace) -> int:
    """Campaign; print one JSON line per event (t on leaderelect.clock(), host-wide)."""
    elector = LeaderElector(args.name, args.value, endpoints=args.endpoints, ttl=args.ttl)
    lock = threading.Lock()

    def emit(ev: str, **fields: Any) -> None:
        with lock:
            print(json.dumps({"t": clock(), "pid": os.getpid(), "ev": ev, **fields}), flush=True)

    elector.on_elected(lambda term: emit("elected", token=term.token))
    elector.on_demoted(lambda term, reason: emit("demoted", token=term.token, reason=str(reason)))
    elector.on_leader_changed(lambda leader: emit("leader_changed", **_describe(leader)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with elector:
        emit("started")
        stop.wait()
    emit("exit")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
