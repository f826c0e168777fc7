"""A schedule: the world's settings and its faults, all drawn from one seed."""

from __future__ import annotations

import random
from typing import NamedTuple

#: the faults a schedule can hold
FAULTS = (
    "partition",  # one candidate cut off from etcd
    "pause",  # one candidate's process stopped (SIGSTOP), then resumed
    "kill",  # one candidate killed (kill -9), restarted later
    "stop",  # one candidate stopped gracefully, restarted later
    "resign",  # the leader resigns (maybe with a cooldown)
    "restart",  # etcd restarts (down, then up: leases refreshed)
    "quorum_loss",  # etcd has no quorum (requests hang), then regains it
    "leader_change",  # a raft leader transfer: leases refreshed, requests in the next 50 ms may fail
    "compaction",  # compact at the current revision
    "delete_key",  # an operator deletes a candidate's key
    "delete_leader_key",  # an operator deletes the leader's key
    "revoke_lease",  # an operator revokes a candidate's lease (half the time the leader's)
    "handoff_delete",  # the leader resigns and, moments later, an operator deletes the next key in line
    "slow_link",  # one candidate's link gets slow
    "slow_callbacks",  # one candidate's callbacks run longer than the TTL
    "deny_watch",  # etcd refuses every new watch for a while (a role change, a stale token)
    "stop_cut_off",  # one candidate stopped while cut off from etcd, restarted once it is back
    "close_session",  # one candidate's shared session is closed (its own: a stop), restarted later
)


class Fault(NamedTuple):
    kind: str
    at: float
    duration: float
    target: int  # a candidate index (-1: the current leader, where that applies)
    value: float = 0.0


class Plan(NamedTuple):
    seed: int
    nodes: int
    ttl: int
    guard: float
    call_timeout: float
    demote_timeout: float
    #: seconds of faults; then quiet, then everyone stops
    duration: float
    #: clocks run at a rate within 1 +- clock_error of true time
    clock_error: float
    #: etcd auth on: a watch opened on a stream idle for over 2 s is refused once
    auth: bool
    #: an application key without a lease under the election's prefix
    noise_key: bool
    faults: tuple[Fault, ...]
    #: per node: its elector is on a shared session, beside a second election that keeps
    #: the lease alive (a stopped elector's key must then go by a delete)
    shared: tuple[bool, ...] = ()

    @property
    def settle(self) -> float:
        """Quiet seconds after the faults before everyone stops."""
        return 3 * self.ttl + 2 * self.call_timeout + 6


def draw(seed: int, *, guard: float | None = None, kinds: tuple[str, ...] = FAULTS, max_faults: int = 4) -> Plan:
    """The schedule of *seed*: the same seed gives the same schedule."""
    rng = random.Random(seed)
    ttl = rng.choice((2, 2, 3, 5))
    call_timeout = rng.choice((0.5, 1.0, 2.0))
    duration = rng.uniform(4.0, 4.0 + 3 * ttl)
    faults = []
    for _ in range(rng.randint(0, max_faults)):
        kind = rng.choice(kinds)
        at = rng.uniform(0.5, duration)
        length = rng.choice((rng.uniform(0.05, 1.0), rng.uniform(0.5, 2.5 * ttl)))
        value = 0.0
        if kind == "resign":
            value = rng.choice((0.0, 0.0, 0.5, ttl))
        elif kind == "slow_link":
            value = rng.choice((0.02, 0.2, ttl / 2))
        elif kind == "handoff_delete":
            value = rng.uniform(0, 0.02)
        elif kind == "revoke_lease":
            value = rng.choice((0.0, 1.0))  # 1: the leader's
        elif kind == "delete_key":
            value = rng.choice((0.0, 1.0))  # 1: the key next in line after the leader's
        elif kind == "stop_cut_off":
            value = rng.uniform(0.3, 1.5)  # restarted after this share of the cut (maybe still cut)
        faults.append(Fault(kind, at, length, rng.choice((-1, 0, 1, 2)), value))
    faults.sort()
    plan = Plan(
        seed=seed,
        nodes=rng.choice((2, 3, 3, 4)),
        ttl=ttl,
        guard=max(0.5, 0.1 * ttl) if guard is None else guard,
        call_timeout=call_timeout,
        demote_timeout=rng.choice((0.0, 0.5, float(ttl))),
        duration=duration,
        clock_error=rng.choice((0.0, 0.001, 0.02)),
        auth=rng.random() < 0.3,
        noise_key=rng.random() < 0.2,
        faults=tuple(faults),
    )
    # drawn last, so that every earlier draw of a seed stays what it was
    return plan._replace(shared=tuple(rng.random() < 0.25 for _ in range(plan.nodes)))
