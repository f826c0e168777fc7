"""Named scenarios: bugs that real chaos runs and reviews found, replayed in simulation.

Each is one fixed schedule and a check of what must (not) happen. They run in ``make test``
(``tests/sim``) and with ``python -m leaderelect.sim scenarios``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from leaderelect.core.base import Mutations
from leaderelect.core.messages import DemotionReason
from leaderelect.sim.check import operator_lag, violations
from leaderelect.sim.plan import Fault, Plan
from leaderelect.sim.world import World


class Scenario(NamedTuple):
    name: str
    story: str
    plan: Plan
    check: Callable[[World], list[str]]


def _plan(seed: int, faults: tuple[Fault, ...], *, ttl: int = 3, duration: float = 8.0, **kw: object) -> Plan:
    settings: dict[str, object] = dict(
        seed=seed,
        nodes=3,
        ttl=ttl,
        guard=max(0.5, 0.1 * ttl),
        call_timeout=1.0,
        demote_timeout=1.0,
        duration=duration,
        clock_error=0.001,
        auth=False,
        noise_key=False,
        faults=faults,
    )
    settings.update(kw)
    return Plan(**settings)  # type: ignore[arg-type]


def _successor_within(world: World, after: float, seconds: float) -> list[str]:
    later = [r for r in world.terms if r.start >= after]
    if not later or later[0].start - after > seconds:
        first = f"{later[0].start - after:.3f} s" if later else "never"
        return [f"no successor within {seconds} s of {after:.3f} (first: {first})"]
    return []


def _reasons(world: World) -> list[DemotionReason]:
    return [reason for core in world.cores for reason in core.demotions for _ in range(core.demotions[reason])]


def _dead_observer(world: World) -> list[str]:
    # every watch broke at 2.0 (etcd restarted); the leader stops at 4.0
    return _successor_within(world, 4.0, 0.5)


def _renewal_retry(world: World) -> list[str]:
    involuntary = [r for r in _reasons(world) if r is not DemotionReason.STOPPED]
    return [f"the leader lost its term to a 1.3 s outage at ttl 3: {involuntary}"] if involuntary else []


def _reason_order(world: World) -> list[str]:
    first = next((core for core in world.cores if core.demotions), None)
    reasons = list(first.demotions) if first is not None else []
    if reasons[:1] != [DemotionReason.DEADLINE_PASSED]:
        return [f"a leader paused past its deadline was demoted for {reasons[:1]}, not 'deadline passed'"]
    return []


def _application_key(world: World) -> list[str]:
    bad = [r.key for r in world.terms if not r.key.rsplit("/", 1)[1].isalnum() or r.key.endswith("last-run")]
    return [f"a non-candidate key led: {bad}"] if bad else _successor_within(world, 3.0, 0.5)


def _operator_deletes_leader(world: World) -> list[str]:
    found = [] if DemotionReason.KEY_DELETED in _reasons(world) else ["the leader did not demote for 'key deleted'"]
    lag = operator_lag(world)
    if lag > 0.05:
        found.append(f"the leader led {lag * 1000:.1f} ms after its key was deleted")
    return found + _successor_within(world, 3.0, 0.5)


def _withdrawn_for_sure(world: World) -> list[str]:
    # node 1 (shared session) stopped at 3.1 while cut off for 1.5 s (its lease survives at
    # ttl 5); the leader stops at 7.0
    return _successor_within(world, 7.0, 0.5)


def _refused_watch(world: World) -> list[str]:
    opened = max(core.follower.watches_opened for core in world.cores)
    return [f"{opened} watches opened in a 4 s refusal: a spin"] if opened > 12 else []


SCENARIOS = (
    Scenario(
        "dead-observer-after-failover",
        "every watch stream breaks (etcd restarts); the leader stops 2 s later: the followers "
        "resynced, so the successor leads within milliseconds (once, an observer that died on a "
        "failover left its candidates waiting for ever)",
        _plan(101, (Fault("restart", 2.0, 0.3, 0), Fault("stop", 4.0, 30.0, -1))),
        _dead_observer,
    ),
    Scenario(
        "renewal-retry-steps",
        "etcd refuses every request for 1.3 s at ttl 3 (the deadline is 2.5 s after the last "
        "renewal): failed renewals are retried in steps of at most 0.25 s, so the leader keeps "
        "its term (retried once per renewal interval, it lost it)",
        _plan(102, (Fault("restart", 2.0, 1.3, 0),), ttl=3, call_timeout=1.0),
        _renewal_retry,
    ),
    Scenario(
        "demotion-reason-order",
        "the leader is paused past its deadline; on resume the deletion of its key (its lease "
        "expired on the server) is waiting too: the reason is 'deadline passed', not 'key deleted'",
        _plan(103, (Fault("pause", 2.0, 8.0, -1),), ttl=2),
        _reason_order,
    ),
    Scenario(
        "application-key-under-prefix",
        "an application key without a lease sits under the election's prefix (sim/last-run): "
        "it is no candidate, and when the leader stops its successor leads at once",
        _plan(104, (Fault("stop", 3.0, 30.0, -1),), noise_key=True),
        _application_key,
    ),
    Scenario(
        "operator-deletes-the-leader-key",
        "an operator deletes the leader's key: the leader demotes ('key deleted') within one "
        "watch delivery, and the next candidate leads",
        _plan(105, (Fault("delete_leader_key", 3.0, 0.0, 0),)),
        _operator_deletes_leader,
    ),
    Scenario(
        "stop-while-etcd-is-down",
        "etcd has no quorum for 4 s; a candidate restarted meanwhile is stopped while its first "
        "grant hangs: it finishes when the grant times out, and sends nothing afterwards (a "
        "failed grant was retried after stop(), for ever while etcd stayed down)",
        _plan(
            107,
            (Fault("quorum_loss", 2.0, 4.0, 0), Fault("kill", 2.5, 0.5, 1), Fault("stop", 3.2, 30.0, 1)),
            ttl=2,
            call_timeout=0.5,
        ),
        lambda world: [],
    ),
    Scenario(
        "shared-session-withdrawal",
        "a candidate on a shared session (another election keeps its lease alive) is stopped "
        "while its connection is cut for 1.5 s: its key is deleted once the connection is back, "
        "and when the leader stops the next live candidate leads (tried once, the delete was "
        "lost, the key stayed on the renewed lease, and the election had no leader)",
        _plan(
            112,  # a seed where the stopped candidate's key is next in line after the leader's
            (Fault("partition", 3.0, 1.5, 1), Fault("stop", 3.1, 30.0, 1), Fault("stop", 7.0, 30.0, -1)),
            ttl=5,
            duration=8.0,
            shared=(False, True, False),
        ),
        _withdrawn_for_sure,
    ),
    Scenario(
        "refused-watch-backs-off",
        "etcd refuses every new watch for 4 s (a stale auth token, a role change): the observer "
        "says the leader is unknown and backs off, jittered and capped, instead of spinning "
        "(once, a refused watch was reopened in a busy loop: 1.35 CPU-s per 2 s)",
        _plan(106, (Fault("deny_watch", 2.0, 4.0, 0),), duration=8.0, auth=True),
        _refused_watch,
    ),
)


def run(scenario: Scenario, mutations: Mutations | None = None) -> list[str]:
    """What the scenario's checks find (nothing, if it passes); *mutations* put a defect back."""
    world = World(scenario.plan, mutations)
    world.simulate()
    return violations(world) + scenario.check(world)


def run_all() -> int:
    failed = 0
    for scenario in SCENARIOS:
        found = run(scenario)
        failed += bool(found)
        print(f"{'FAIL' if found else 'PASS'} {scenario.name}: {found[0] if found else scenario.story}")
    return 1 if failed else 0
