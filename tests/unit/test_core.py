"""The core driven by hand: no etcd, no threads, time passed in."""

from __future__ import annotations

import random
from collections.abc import Sequence

from leaderelect.core import Config, ElectionCore, Mutations, Phase
from leaderelect.core.messages import (
    Action,
    Call,
    Change,
    Confirm,
    Delete,
    Deliver,
    Demoted,
    DemotionReason,
    Elected,
    Entry,
    Failed,
    Failure,
    Finished,
    Grant,
    Granted,
    Join,
    Joined,
    KeepAlive,
    OpenWatch,
    ReadQueue,
    Renewed,
    ResignDone,
    Revoke,
    Snapshot,
    WatchCreated,
    WatchEvents,
)

SETTINGS = Config(name="jobs", value=b"me", ttl=3, guard=0.5, call_timeout=1.0, demote_timeout=1.0)
LEASE = 0x1F


def calls(actions: Sequence[object], kind: type) -> list[Call]:
    return [a for a in actions if isinstance(a, Call) and isinstance(a.request, kind)]


def leader_at(t0: float = 100.0, mutations: Mutations | None = None) -> tuple[ElectionCore, list[Action]]:
    """A core that became leader at *t0* (lease granted at t0, key created at revision 5)."""
    core = ElectionCore(SETTINGS, random.Random(1), mutations)
    out = core.start(t0)
    (grant,) = calls(out, Grant)
    (read,) = calls(out, ReadQueue)
    out = core.answer(t0, grant.call_id, Granted(LEASE, 3))
    (join,) = calls(out, Join)
    assert join.request == Join("jobs/1f", LEASE, b"me")
    out = core.answer(t0, join.call_id, Joined(5))
    out = core.answer(t0, read.call_id, Snapshot(4, ()))
    (watch,) = [a for a in out if isinstance(a, OpenWatch)]
    assert watch.start_revision == 5
    core.watch(t0, watch.watch_id, WatchCreated())
    entry = Entry("jobs/1f", b"me", 5, 5, LEASE)
    out = core.watch(t0, watch.watch_id, WatchEvents((Change("jobs/1f", 5, entry),)))
    (confirm,) = calls(out, Confirm)
    assert confirm.request == Confirm("jobs/1f", 5, LEASE)
    out = core.answer(t0, confirm.call_id, True)
    return core, out


def test_a_lone_candidate_confirms_its_key_then_leads() -> None:
    core, out = leader_at()
    assert core.phase is Phase.LEADING and core.is_leader(100.0)
    delivered = [a.callback for a in out if isinstance(a, Deliver)]
    assert isinstance(delivered[-1], Elected) and delivered[-1].term.token == 5


def test_is_leader_is_computed_from_the_deadline_not_from_a_flag() -> None:
    core, _ = leader_at()
    # granted at 100 with ttl 3, guard 0.5: trusted until 102.5, whatever the core was told
    assert core.is_leader(102.49)
    assert not core.is_leader(102.5)


def test_the_deadline_counts_from_when_the_renewal_was_sent() -> None:
    core, _ = leader_at()
    out = core.tick(101.0)  # renewal due at 100 + ttl/3
    (renew,) = calls(out, KeepAlive)
    assert renew.timeout == 1.0  # min(call_timeout, ttl/3)
    core.answer(101.9, renew.call_id, Renewed(3))  # answered 0.9 s later
    assert core.lease is not None and core.lease.valid_until == 101.0 + 3 - 0.5


def test_a_failed_renewal_is_retried_while_time_is_left_then_the_term_ends_at_the_deadline() -> None:
    core, _ = leader_at()
    out = core.tick(101.0)
    (renew,) = calls(out, KeepAlive)
    out = core.answer(101.1, renew.call_id, Failed(Failure.UNAVAILABLE))
    out = core.tick(101.24)  # retried within min(0.25, remaining / 10)
    assert calls(out, KeepAlive)
    out = core.tick(102.5)
    demoted = [a.callback for a in out if isinstance(a, Deliver) and isinstance(a.callback, Demoted)]
    assert demoted and demoted[0].reason is DemotionReason.DEADLINE_PASSED
    assert not core.is_leader(102.5)
    # the lease is given up for good: revoked, and a new one granted
    (revoke,) = calls(out, Revoke)
    assert revoke.request == Revoke(LEASE)
    out = core.answer(102.6, revoke.call_id, None)
    assert calls(out, Grant)


def test_resign_waits_for_on_demoted_then_deletes_the_key() -> None:
    core, _ = leader_at()
    request, out = core.resign(101.0, cooldown=0.5)
    (demoted,) = [a for a in out if isinstance(a, Deliver)]
    assert isinstance(demoted.callback, Demoted) and demoted.callback.reason is DemotionReason.RESIGNED
    assert not calls(out, Delete)  # not before on_demoted returned
    out = core.callback_done(101.2, demoted.seq)
    (delete,) = calls(out, Delete)
    assert delete.request == Delete("jobs/1f", 5)
    out = core.answer(101.3, delete.call_id, True)
    assert ResignDone(request, True) in out
    assert not calls(out, Join)  # cooling down
    assert not calls(core.tick(101.7), Join)
    assert calls(core.tick(101.8), Join)


def test_stop_steps_down_revokes_and_finishes() -> None:
    core, _ = leader_at()
    out = core.stop(101.0)
    assert [a for a in out if isinstance(a, Deliver) and isinstance(a.callback, Demoted)]
    out = core.tick(102.0)  # on_demoted still running: demote_timeout (1 s) passed
    (delete,) = calls(out, Delete)
    out = core.answer(102.1, delete.call_id, True)
    (revoke,) = calls(out, Revoke)
    out = core.answer(102.2, revoke.call_id, None)
    assert Finished() in out and core.finished


def test_a_term_never_resumes_and_the_mutation_that_resumes_it_is_caught() -> None:
    for mutations, resumed in ((Mutations(), False), (Mutations(resume_kept_lease=True), True)):
        core, _ = leader_at(mutations=mutations)
        out = core.tick(102.5)  # the deadline passes without a renewal
        renewing_old = [c for c in calls(out, KeepAlive) if c.request == KeepAlive(LEASE)]
        assert bool(renewing_old) is resumed


def test_a_pending_withdrawal_survives_a_new_election_that_stops_before_it_joins() -> None:
    """On a shared session a stopped election's key is withdrawn for sure. A new election
    of the name drops that withdrawal only as it joins (it adopts the key): stopped before
    it joined, it must leave the withdrawal to go on, or the key stays queued on the
    session's live lease (the threaded campaign once dropped it as its thread began)."""
    from leaderelect.core.session import SessionCore

    session = SessionCore(SETTINGS, random.Random(1))
    first = ElectionCore(SETTINGS, random.Random(1), session=session)
    (grant,) = calls(first.start(100.0), Grant)
    (join,) = calls(session.answer(100.0, grant.call_id, Granted(LEASE, 3)), Join)
    session.answer(100.0, join.call_id, Joined(5))
    (delete,) = calls(first.stop(100.1), Delete)
    out = session.answer(100.2, delete.call_id, Failed(Failure.UNAVAILABLE))  # retried in 0.25 s
    assert Finished("jobs") in out and session.pending_withdrawals() == 1
    second = ElectionCore(SETTINGS, random.Random(1), session=session)
    (retry,) = calls(session.tick(100.5), Delete)  # the second try is in flight ...
    assert not calls(second.start(100.5), Join)  # ... so the new election waits to join
    assert Finished("jobs") in second.stop(100.6)  # and stops before it joined
    session.answer(100.7, retry.call_id, True)
    assert session.withdrawn == 1 and session.pending_withdrawals() == 0
