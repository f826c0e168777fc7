"""Deadline arithmetic of a lease, with an injected clock."""

from __future__ import annotations

from leaderelect.core.lease import LeaseEnd
from leaderelect.session import Lease


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_alive_until_the_deadline_then_not_without_any_event() -> None:
    clock = FakeClock()
    # granted at t_send=100 with ttl 2 and guard 0.5: trusted until 101.5
    lease = Lease(1, 2, 100.0 + 2 - 0.5, clock)
    clock.now = 101.49
    assert lease.alive()
    clock.now = 101.5
    assert not lease.alive()  # a paused process reads False the instant it resumes late
    assert lease.lost_reason is None  # nobody had to notice


def test_extend_moves_forward_only() -> None:
    clock = FakeClock()
    lease = Lease(1, 2, 101.5, clock)
    lease.extend(102.0)
    assert lease.valid_until == 102.0
    lease.extend(101.0)  # a late answer to an older renewal must not pull it back
    assert lease.valid_until == 102.0


def test_lost_is_final() -> None:
    clock = FakeClock()
    lease = Lease(1, 2, 101.5, clock)
    assert lease.lose(LeaseEnd.DEADLINE)
    assert not lease.lose(LeaseEnd.EXPIRED)
    assert lease.lost_reason is LeaseEnd.DEADLINE
    lease.extend(200.0)  # a renewal answer after the loss never revives it
    assert lease.valid_until == 101.5
    assert not lease.alive()


def test_remaining() -> None:
    clock = FakeClock()
    lease = Lease(1, 2, 101.5, clock)
    assert lease.remaining() == 1.5
    clock.now = 102.0
    assert lease.remaining() == -0.5


def test_extend_records_when_the_renewal_was_sent() -> None:
    clock = FakeClock()
    lease = Lease(1, 2, 101.5, clock, sent_at=100.0)
    assert lease.renewed_at == 100.0
    lease.extend(102.2, sent_at=100.7)
    assert lease.renewed_at == 100.7
    lease.extend(101.9, sent_at=100.4)  # an older renewal's late answer changes nothing
    assert (lease.valid_until, lease.renewed_at) == (102.2, 100.7)


def test_why_a_term_ended_puts_the_deadline_first() -> None:
    from leaderelect.core.elector import why_ended
    from leaderelect.term import DemotionReason

    clock = FakeClock()
    lease = Lease(1, 2, 101.5, clock)

    def why(lease: Lease, otherwise: DemotionReason) -> DemotionReason:
        return why_ended(lease.remaining(), lease.lost_reason, otherwise)

    assert why(lease, DemotionReason.KEY_DELETED) == DemotionReason.KEY_DELETED
    clock.now = 101.6  # resumed after a pause: the deletion seen now was caused by our deadline
    assert why(lease, DemotionReason.KEY_DELETED) == DemotionReason.DEADLINE_PASSED
    revoked = Lease(2, 2, 101.5, FakeClock())
    revoked.lose(LeaseEnd.EXPIRED)
    assert why(revoked, DemotionReason.KEY_DELETED) == DemotionReason.LEASE_LOST
    late = Lease(3, 2, 101.5, FakeClock())
    late.lose(LeaseEnd.DEADLINE)
    assert why(late, DemotionReason.LEASE_LOST) == DemotionReason.DEADLINE_PASSED


def test_a_renewal_answered_after_the_deadline_does_not_bring_the_lease_back() -> None:
    """A renewal whose answer is handled after the deadline (the process was paused, or
    starved of the GIL, with the answer in hand) must not make ``is_leader`` read True again
    once it read False: the term ended at the deadline."""
    clock = FakeClock()
    lease = Lease(1, 3, 102.5, clock)  # granted at 100, ttl 3, guard 0.5
    clock.now = 102.6  # the deadline passed; the renewal sent at 101.0 is answered only now
    assert not lease.alive()
    lease.extend(101.0 + 3 - 0.5, sent_at=101.0)
    assert not lease.alive()
    assert lease.valid_until == 102.5
