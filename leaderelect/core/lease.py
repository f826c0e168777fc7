"""The lease: granted, renewed from when each renewal was *sent*, lost for good.

The local deadline is ``t_send + granted_ttl - guard``, where ``t_send`` is when the last
successful renewal (or the grant) was sent: etcd cannot expire the lease before
``t_send + granted_ttl``. A lease that is lost is never renewed again; it is revoked (its
keys go now) and a new one is granted — etcd refreshes every lease to its full TTL after an
outage, so a kept lease would keep a dead term's key alive.
"""

from __future__ import annotations

from typing import Callable

from leaderelect.core.base import Context, retry_wait
from leaderelect.core.messages import Answer, Failed, Failure, Grant, Granted, KeepAlive, Reason, Renewed, Revoke


class LeaseEnd(Reason):
    """Why a lease is no longer used."""

    DEADLINE = "deadline passed without renewal"
    EXPIRED = "lease expired on the server"
    UNKNOWN_TO_ETCD = "etcd no longer knows the lease"
    TERM_ENDED = "term ended"
    KEY_NOT_DELETED = "could not delete the leader key"
    CLOSED = "session closed"
    #: a bug was caught (logged) and the lease given up, to be safe
    ERROR = "internal error"


def renewal_budget(call_timeout: float, ttl: int) -> float:
    """The most a renewal may take: one renewal interval. A renewal that cannot finish by
    then is on a member that froze or lost its quorum, and waiting out ``call_timeout`` there
    cost the term at ttl 3 (renewal due at 1 s, deadline at 2.5 s, call_timeout 2 s); the
    retry goes to the next member while the lease has time. (Not less: a round trip up to
    ttl/3 is healthy.)"""
    return min(call_timeout, ttl / 3)


def renewal_retry_wait(lease_left: float) -> float:
    """Seconds before retrying a failed renewal: soon, and sooner the less of the lease is
    left (a member failover costs each failed attempt a step, and the lease must not run out
    between steps)."""
    return min(0.25, max(0.02, lease_left / 10))


class LeaseState:
    """One granted lease and its local deadline (which only moves forward)."""

    __slots__ = ("id", "lost", "renewed_at", "ttl", "valid_until")

    def __init__(self, lease_id: int, ttl: int, valid_until: float, renewed_at: float) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.valid_until = valid_until
        self.renewed_at = renewed_at
        self.lost: LeaseEnd | None = None

    def alive(self, now: float) -> bool:
        return self.lost is None and now < self.valid_until

    def remaining(self, now: float) -> float:
        return self.valid_until - now


class LeaseKeeper:
    """Grants a lease, renews it every ``ttl/3``, loses it at its deadline, grants the next."""

    def __init__(
        self,
        ctx: Context,
        on_granted: Callable[[float, LeaseState], None],
        on_lost: Callable[[float, LeaseState], None],
    ) -> None:
        self._ctx = ctx
        self._on_granted = on_granted
        self._on_lost = on_lost
        self.lease: LeaseState | None = None
        self._to_revoke: set[int] = set()
        self._attempt = 0
        self._call: int | None = None  # the grant, revoke or renewal in flight (one at a time)
        self._renewing = False  # whether that call is a renewal
        self._closing = False
        self._kept: LeaseState | None = None  # Mutations.resume_kept_lease only
        #: leases granted so far
        self.granted = 0

    def start(self, now: float) -> None:
        self._begin_grant(now)

    def alive_lease(self, now: float) -> LeaseState | None:
        lease = self.lease
        return lease if lease is not None and lease.alive(now) else None

    # -- grant -----------------------------------------------------------------------------

    def _begin_grant(self, now: float) -> None:
        ctx = self._ctx
        if self._to_revoke:  # an abandoned lease may live on the server: its keys go first
            lease_id = min(self._to_revoke)
            self._call = ctx.call(
                Revoke(lease_id), ctx.settings.call_timeout, lambda t, a: self._revoked(t, a, lease_id)
            )
        elif self._kept is not None:
            kept = self._kept
            self._call = ctx.call(
                KeepAlive(kept.id), ctx.settings.call_timeout, lambda t, a: self._rekept(t, a, kept, now)
            )
        else:
            self._call = ctx.call(
                Grant(ctx.settings.ttl), ctx.settings.call_timeout, lambda t, a: self._granted(t, a, now)
            )

    def _revoked(self, now: float, answer: Answer, lease_id: int) -> None:
        self._call = None
        if isinstance(answer, Failed) and answer.failure is not Failure.LEASE_NOT_FOUND:
            if self._closing:
                self._to_revoke.discard(lease_id)  # it expires by its TTL
                self._revoke_next(now)
            else:
                self._retry_grant(now)
            return
        self._to_revoke.discard(lease_id)
        if self._closing:
            self._revoke_next(now)
        else:
            self._begin_grant(now)

    def _granted(self, now: float, answer: Answer, t_send: float) -> None:
        self._call = None
        if self._closing:  # stopped while the grant was in flight: no retry, no new lease
            if isinstance(answer, Granted):
                self._to_revoke.add(answer.lease_id)
            self._revoke_next(now)
            return
        if not isinstance(answer, Granted):
            self._retry_grant(now)
            return
        guard = self._ctx.settings.guard
        self._hold(now, LeaseState(answer.lease_id, answer.ttl, t_send + answer.ttl - guard, t_send))

    def _rekept(self, now: float, answer: Answer, kept: LeaseState, t_send: float) -> None:
        """Mutations.resume_kept_lease: renew the lost lease as if it were new (wrong)."""
        self._call = None
        self._kept = None
        if self._closing:
            self._revoke_next(now)
            return
        if isinstance(answer, Renewed) and answer.ttl > 0:
            self._hold(now, LeaseState(kept.id, answer.ttl, t_send + answer.ttl - self._ctx.settings.guard, t_send))
        else:
            self._begin_grant(now)

    def _hold(self, now: float, lease: LeaseState) -> None:
        self.lease = lease
        self.granted += 1
        self._attempt = 0
        self._ctx.set_timer("lease.renew", lease.renewed_at + lease.ttl / 3, self._renew)
        self._ctx.set_timer("lease.deadline", lease.valid_until, self._deadline)
        self._on_granted(now, lease)

    def _retry_grant(self, now: float) -> None:
        if self._closing:
            self._revoke_next(now)
            return
        self._attempt += 1
        self._ctx.set_timer("lease.grant", now + retry_wait(self._ctx.rng, self._attempt), self._begin_grant)

    # -- renew -----------------------------------------------------------------------------

    def _renew(self, now: float) -> None:
        lease = self.lease
        if lease is None or not lease.alive(now):
            return  # the deadline timer says why
        timeout = min(renewal_budget(self._ctx.settings.call_timeout, lease.ttl), lease.valid_until - now)
        self._call = self._ctx.call(KeepAlive(lease.id), timeout, lambda t, a: self._renewed(t, a, lease, now))
        self._renewing = True

    def _renewed(self, now: float, answer: Answer, lease: LeaseState, t_send: float) -> None:
        self._call = None
        self._renewing = False
        if lease is not self.lease or not lease.alive(now):
            return
        if isinstance(answer, Renewed):
            if answer.ttl <= 0:
                self.lose(now, lease, LeaseEnd.EXPIRED)
                return
            valid_until = t_send + answer.ttl - self._ctx.settings.guard
            if valid_until > lease.valid_until:
                lease.valid_until = valid_until
                lease.renewed_at = t_send
                self._ctx.set_timer("lease.deadline", valid_until, self._deadline)
            self._ctx.set_timer("lease.renew", t_send + lease.ttl / 3, self._renew)
            return
        if isinstance(answer, Failed) and answer.failure is Failure.LEASE_NOT_FOUND:
            self.lose(now, lease, LeaseEnd.EXPIRED)
            return
        self._ctx.set_timer("lease.renew", now + renewal_retry_wait(lease.remaining(now)), self._renew)

    def _deadline(self, now: float) -> None:
        lease = self.lease
        if lease is None or lease.lost is not None:
            return
        if now >= lease.valid_until:
            self.lose(now, lease, LeaseEnd.DEADLINE)
        else:
            self._ctx.set_timer("lease.deadline", lease.valid_until, self._deadline)

    # -- loss --------------------------------------------------------------------------------

    def lose(self, now: float, lease: LeaseState, reason: LeaseEnd) -> None:
        """Give *lease* up for good (also: a term on it ended); a new lease follows."""
        if lease.lost is not None:
            return
        lease.lost = reason
        if lease is self.lease:
            self._ctx.cancel_timer("lease.renew")
            self._ctx.cancel_timer("lease.deadline")
            if self._renewing:  # its answer no longer matters
                self._ctx.forget(self._call)
                self._call, self._renewing = None, False
        if self._ctx.mutations.resume_kept_lease and reason is LeaseEnd.DEADLINE:
            self._kept = lease
        else:
            self._to_revoke.add(lease.id)
        self._on_lost(now, lease)
        if not self._closing and self._call is None and lease is self.lease:
            self._begin_grant(now)

    # -- close -------------------------------------------------------------------------------

    def close(self, now: float) -> None:
        """Stop renewing, revoke what is left (failures are fine: it expires by its TTL)."""
        self._closing = True
        for name in ("lease.renew", "lease.deadline", "lease.grant"):
            self._ctx.cancel_timer(name)
        lease = self.lease
        if lease is not None and lease.lost is None:
            lease.lost = LeaseEnd.CLOSED
            self._to_revoke.add(lease.id)
        if self._renewing:  # a renewal in flight: not needed any more
            self._ctx.forget(self._call)
            self._call, self._renewing = None, False
        if self._call is None:
            self._revoke_next(now)
        # else: a grant or revoke in flight; its answer continues the revokes

    def _revoke_next(self, now: float) -> None:
        if self._to_revoke:
            lease_id = min(self._to_revoke)
            self._call = self._ctx.call(
                Revoke(lease_id), self._ctx.settings.call_timeout, lambda t, a: self._revoked(t, a, lease_id)
            )

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def closed(self) -> bool:
        """Closing, and nothing left in flight."""
        return self._closing and self._call is None
