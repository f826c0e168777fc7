"""``python -m leaderelect.sim run|replay|scenarios``: deterministic simulation of the core.

``run --seeds N`` runs N schedules (seeds 0..N-1 unless ``--first``) on ``--workers``
processes and fails if any schedule breaks a property; ``replay SEED`` runs one seed again,
exactly, with ``--trace`` printing every action; ``--control NAME`` runs a deliberate defect
that must FAIL; ``scenarios`` runs the named scenarios of past bugs.
"""

from __future__ import annotations

import argparse
import sys
import time

from leaderelect.sim.runner import CONTROLS, plan_of, run_many


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderelect.sim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run many seeds")
    run.add_argument("--seeds", type=int, default=10_000)
    run.add_argument("--first", type=int, default=0)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--control", choices=sorted(CONTROLS))
    run.add_argument("--coverage", action="store_true", help="print the phase changes and faults reached")
    replay = sub.add_parser("replay", help="run one seed again, exactly")
    replay.add_argument("seed", type=int)
    replay.add_argument("--control", choices=sorted(CONTROLS))
    replay.add_argument("--trace", action="store_true", help="print every action of every candidate")
    sub.add_parser("scenarios", help="run the named scenarios of past bugs")
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "replay":
        return _replay(args)
    from leaderelect.sim.scenarios import run_all

    return run_all()


def _run(args: argparse.Namespace) -> int:
    what = f"control {args.control!r}" if args.control else "the core"
    print(f"simulating {what}: {args.seeds} schedules from seed {args.first} on {args.workers} processes")
    started = time.monotonic()
    total = run_many(args.seeds, args.first, args.workers, args.control, stop_at_first=bool(args.control))
    took = time.monotonic() - started
    print(
        f"{total['schedules']} schedules in {took:.1f} s ({total['schedules'] / took:.0f}/s), "
        f"{total['events']} events, {total['terms']} terms; "
        f"longest lead after an operator deleted the leader's key: {total['operator_lag'] * 1000:.1f} ms"
    )
    if args.coverage:
        for name, count in sorted(total["coverage"].items()):
            print(f"  {count:10d}  {name}")
    failed = total["failed"]
    for seed, found in failed[:5]:
        control = f" CONTROL={args.control}" if args.control else ""
        print(f"FAIL seed {seed}: {found[0]}   (replay: make sim SEED={seed}{control})")
    if args.control:
        print("the control FAILED, as it must" if failed else "the control PASSED: the checker missed the defect")
        return 0 if failed else 1
    print(f"FAIL ({len(failed)} schedules)" if failed else "PASS")
    return 1 if failed else 0


def _replay(args: argparse.Namespace) -> int:
    from leaderelect.core import Mutations
    from leaderelect.sim.check import violations
    from leaderelect.sim.world import World

    plan = plan_of(args.seed, args.control)
    print(plan)
    world = World(plan, CONTROLS[args.control].mutations if args.control else Mutations())
    if args.trace:
        world.trace = print
    world.simulate()
    for record in world.terms:
        print(f"term: node {record.node}/{record.incarnation} token {record.token} {record.start:.4f} .. {record.end}")
    found = violations(world)
    for line in found:
        print("FAIL", line)
    print(f"FAIL ({len(found)} violations)" if found else "PASS")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
