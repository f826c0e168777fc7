"""``python -m leaderelect.chaos run|check``: inject faults, then check the histories."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from leaderelect.chaos.checker import check, format_report
from leaderelect.chaos.nemesis import FAULTS, Harness, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderelect.chaos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run contenders under faults, then check")
    r.add_argument("--duration", type=float, default=600, help="seconds of random faults (default 600)")
    r.add_argument(
        "--schedule", default=None, help="'short' (every fault once) or a comma-separated list; default: random"
    )
    r.add_argument("--contenders", type=int, default=5)
    r.add_argument("--ttl", type=int, default=2)
    r.add_argument("--guard", type=float, default=None)
    r.add_argument("--unsafe-guard", action="store_true", help="allow a negative guard (negative control)")
    r.add_argument("--seed", type=int, default=int(time.time()))
    r.add_argument("--auth", action="store_true", help="etcd auth on, tokens expiring after 2 s idle")
    r.add_argument("--crowd", default="5x200", help="the large election: PROCESSESxCANDIDATES (default 5x200)")
    r.add_argument("--no-fences", action="store_true", help="no PostgreSQL/Redis writes")
    r.add_argument("--unguarded", action="store_true", help="write to PostgreSQL/Redis without fences (must FAIL)")
    r.add_argument("--out", default=None, help="folder for histories (default: a new temp folder)")
    r.add_argument("--report", default=None, help="also write the report (Markdown) here")
    c = sub.add_parser("check", help="check the histories in a folder")
    c.add_argument("folder")
    args = parser.parse_args(argv)

    if args.command == "check":
        report = check(Path(args.folder))
        print(format_report(report))
        return 0 if report.ok else 1

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="leaderelect-chaos-"))
    schedule = None
    if args.schedule == "short":
        schedule = list(FAULTS)
    elif args.schedule:
        schedule = args.schedule.split(",")
    setup = f"{args.contenders} contenders, ttl {args.ttl} s, seed {args.seed}" + (", auth on" if args.auth else "")
    print(f"chaos: {setup}, histories in {out}", flush=True)
    started = time.monotonic()
    harness = Harness(
        out,
        contenders=args.contenders,
        ttl=args.ttl,
        guard=args.guard,
        unsafe_guard=args.unsafe_guard,
        seed=args.seed,
        say=lambda s: print(s, flush=True),
        auth=args.auth,
        crowd=_crowd(args.crowd),
        fences=not args.no_fences,
        unguarded=args.unguarded,
    )
    _stop_on_signals()
    try:
        run(harness, schedule, args.duration)
    except KeyboardInterrupt:
        print(f"\nchaos: stopped after {time.monotonic() - started:.0f} s; histories in {out}", flush=True)
        return 130
    report = check(out)
    text = format_report(report)
    print(f"\nran {time.monotonic() - started:.0f} s\n{text}")
    if args.report:
        header = f"# Chaos run\n\n{setup}, {time.monotonic() - started:.0f} s.\n\n"
        Path(args.report).write_text(header + text + "\n\n```\n" + json.dumps(report.stats, indent=1) + "\n```\n")
    return 0 if report.ok else 1


def _stop_on_signals() -> None:
    """SIGTERM (a CI timeout, a kill) and SIGINT end a run the way Ctrl-C does: the harness
    stops its contenders and servers and removes their folders. (By default SIGTERM ended
    the run at once and left them running, and a run started in the background from a
    script ignored SIGINT.)"""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def _crowd(text: str) -> tuple[int, int]:
    processes, _, per = text.partition("x")
    return int(processes), int(per)


if __name__ == "__main__":
    sys.exit(main())
