"""Run many seeds (in parallel processes) or replay one, and sum up what they reached."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from typing import Any, NamedTuple

from leaderelect.core import Mutations
from leaderelect.sim.check import operator_lag, violations
from leaderelect.sim.plan import FAULTS, Plan, draw
from leaderelect.sim.world import World


class Control(NamedTuple):
    """A deliberate defect and the schedules that show it; the checker must FAIL it."""

    mutations: Mutations = Mutations()
    guard: float | None = None
    kinds: tuple[str, ...] = FAULTS
    max_faults: int = 4


CONTROLS = {
    # demote 0.5 s *after* the lease's earliest server-side expiry
    "negative-guard": Control(guard=-0.5),
    # lead on the view alone; shown by handoffs during which an operator deletes the next key
    "skip-confirm": Control(Mutations(skip_confirm=True), kinds=("handoff_delete", "slow_link"), max_faults=8),
    # keep renewing a lease whose deadline passed: the old term comes back with its old token
    "resume-term": Control(Mutations(resume_kept_lease=True)),
}


def plan_of(seed: int, control: str | None = None) -> Plan:
    c = CONTROLS[control] if control else Control()
    return draw(seed, guard=c.guard, kinds=c.kinds, max_faults=c.max_faults)


def simulate(seed: int, control: str | None = None) -> World:
    world = World(plan_of(seed, control), CONTROLS[control].mutations if control else Mutations())
    world.simulate()
    return world


def run_range(args: tuple[int, int, str | None, bool]) -> dict[str, Any]:
    """Seeds first..first+count-1; a summary (with the failing seeds)."""
    first, count, control, stop_at_first = args
    failed: list[tuple[int, list[str]]] = []
    coverage: Counter[str] = Counter()
    events = terms = 0
    lag = 0.0
    done = 0
    for seed in range(first, first + count):
        world = simulate(seed, control)
        done += 1
        events += world.events
        terms += len(world.terms)
        lag = max(lag, operator_lag(world))
        for fault in world.plan.faults:
            coverage[f"fault {fault.kind}"] += 1
        for core in world.cores:
            for (old, new), n in core.transitions.items():
                coverage[f"{old.value} -> {new.value}"] += n
            for reason, n in core.demotions.items():
                coverage[f"demoted: {reason.value}"] += n
        for session in {id(core.session): core.session for core in world.cores if core.session.shared}.values():
            coverage["shared session"] += 1
            coverage["shared session: elections on it"] += len([c for c in world.cores if c.session is session])
            coverage["shared session: withdrawal begun"] += session.withdrawals
            coverage["shared session: key deleted by a withdrawal"] += session.withdrawn
            coverage["shared session: withdrawal retried"] += session.withdrawal_retries
            coverage["shared session: key adopted by the next election"] += session.adopted
            coverage["shared session: join waited for a delete in flight"] += session.waited
        found = violations(world)
        if found:
            failed.append((seed, found))
            if stop_at_first:
                break
    return {
        "schedules": done,
        "events": events,
        "terms": terms,
        "failed": failed,
        "coverage": coverage,
        "operator_lag": lag,
    }


def run_many(
    seeds: int, first: int = 0, workers: int = 2, control: str | None = None, stop_at_first: bool = False
) -> dict[str, Any]:
    """Run *seeds* schedules from *first* on *workers* processes; the summed summary."""
    chunk = max(1, min(500, seeds // (workers * 4) or 1))
    jobs = [(s, min(chunk, first + seeds - s), control, stop_at_first) for s in range(first, first + seeds, chunk)]
    if workers <= 1:
        parts = [run_range(job) for job in jobs]
    else:
        # spawn, not fork: the parent may hold gRPC state (pytest, the package's imports)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(run_range, jobs, chunksize=1)
    total: dict[str, Any] = {
        "schedules": 0,
        "events": 0,
        "terms": 0,
        "failed": [],
        "coverage": Counter(),
        "operator_lag": 0.0,
    }
    for part in parts:
        for key in ("schedules", "events", "terms"):
            total[key] += part[key]
        total["failed"].extend(part["failed"])
        total["coverage"].update(part["coverage"])
        total["operator_lag"] = max(total["operator_lag"], part["operator_lag"])
    total["failed"].sort()
    return total
