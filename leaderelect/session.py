"""A session: one etcd connection and one lease at a time, kept alive by one thread.

Like etcd's Go ``concurrency.Session``, several elections may share a session (one lease,
one connection). Unlike it, a session outlives its leases: when a lease is lost it is
abandoned for good (revoked as soon as etcd answers) and a new one is granted, so a term
that ended is never resumed — etcd refreshes every lease to its full TTL after an outage,
and a kept lease would keep a dead leader's key alive.

The local deadline of a lease is ``t_send + granted_ttl - guard``, where ``t_send`` is read
on :func:`leaderelect.clock` (CLOCK_BOOTTIME where the platform has it) *before* sending
the last renewal (or grant) that succeeded: etcd cannot expire the lease before ``t_send + granted_ttl``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

from leaderelect import _clock, _config
from leaderelect._etcd import EtcdClient
from leaderelect._retry import retrying
from leaderelect._withdrawals import Withdrawals
from leaderelect.core.lease import LeaseEnd, renewal_budget, renewal_retry_wait
from leaderelect.exceptions import ConfigurationError, ElectorStateError, EtcdError, LeaseExpiredError
from leaderelect.settings import SessionOptions, Settings

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is 3.11+; only type checkers read it

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Listener = Callable[[str, "Lease"], None]
#: ``hook(event, seconds)``: "keepalive" with the renewal's round trip (for metrics)
StatsHook = Callable[[str, float], None]
#: asks an elector to stop; returns a function that waits until it has
Stopper = Callable[[], Callable[[], None]]

LEASE_GRANTED = "lease granted"
LEASE_LOST = "lease lost"


class Lease:
    """One granted lease and its local deadline (which only moves forward)."""

    def __init__(
        self, lease_id: int, ttl: int, valid_until: float, clock: Clock = _clock.clock, sent_at: float | None = None
    ) -> None:
        #: the lease id etcd assigned
        self.id = lease_id
        #: the TTL etcd granted, in seconds (may exceed the one requested)
        self.ttl = ttl
        self._valid_until = valid_until
        self._clock = clock
        self._lost_reason: LeaseEnd | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        #: :func:`leaderelect.clock` when the last successful renewal (or the grant) was sent
        self.renewed_at = valid_until - ttl if sent_at is None else sent_at

    @property
    def valid_until(self) -> float:
        """The :func:`leaderelect.clock` instant this lease stops being trusted locally."""
        with self._lock:
            return self._valid_until

    @property
    def lost_reason(self) -> LeaseEnd | None:
        """Why the lease was given up (None while it is not); a :class:`LeaseEnd`."""
        with self._lock:
            return self._lost_reason

    def extend(self, valid_until: float, sent_at: float | None = None) -> None:
        """Move the deadline forward to *valid_until* (a renewal sent at *sent_at* succeeded);
        never back, never after the lease was lost, and never once its deadline passed: an
        answer handled late (a pause, a starved thread) must not make ``alive()`` read True
        again after it read False."""
        with self._lock:
            if self._lost_reason is None and self._clock() < self._valid_until < valid_until:
                self._valid_until = valid_until
                if sent_at is not None:
                    self.renewed_at = sent_at

    def lose(self, reason: LeaseEnd) -> bool:
        """Mark the lease lost for good; True the first time."""
        with self._lock:
            if self._lost_reason is not None:
                return False
            self._lost_reason = reason
            return True

    def alive(self) -> bool:
        """Not lost, and its local deadline not passed: computed now, never a stale flag.

        False in a forked copy of the process that holds the lease (checked before the
        lock, which a thread of the parent may have held at fork()).
        """
        if os.getpid() != self._pid:
            return False
        with self._lock:
            return self._lost_reason is None and self._clock() < self._valid_until

    def remaining(self) -> float:
        """Seconds left before the local deadline now (negative once it passed)."""
        return self.valid_until - self._clock()

    def __repr__(self) -> str:
        return f"Lease(id={self.id:x}, ttl={self.ttl}, remaining={self.remaining():.3f})"


class Session:
    """One connection to etcd and a lease kept alive for the elections that share it.

    .. code-block:: python

        with Session("127.0.0.1:2379", ttl=5) as session:
            a = LeaderElector("billing", session=session)
            b = LeaderElector("reports", session=session)

    :param endpoints: ``"host:port,host:port"`` or a list; ``https://`` implies TLS.
    :param options: ``ttl``, ``guard``, ``call_timeout``, ``tls_ca``, ``tls_cert``,
        ``tls_key``, ``tls_credentials``, ``user``, ``password``, ``keepalive_time``: the
        fields of :class:`~leaderelect.Settings`, where each is documented; ``None`` takes
        the default, except ``keepalive_time=None``, which turns the pings off.
        ``session.settings`` holds the values in force.
    :raises ConfigurationError: for any invalid setting.
    """

    def __init__(
        self, endpoints: str | Sequence[str] | None = None, *, name: str = "session", **options: Unpack[SessionOptions]
    ) -> None:
        settings = Settings.of({"endpoints": endpoints, **options})
        parsed, https = _config.parse_endpoints(settings.endpoints)
        self.ttl = _config.check_ttl(settings.ttl)
        self.guard = _config.check_guard(self.ttl, settings.guard)
        self.call_timeout = _config.check_number("call_timeout", settings.call_timeout)
        keepalive_time = settings.keepalive_time
        if keepalive_time is not None:
            _config.check_number("keepalive_time", keepalive_time)
        tls = _config.read_tls(
            settings.tls_ca, settings.tls_cert, settings.tls_key, https=https, credentials=settings.tls_credentials
        )
        user, password = _config.check_credentials(settings.user, settings.password)
        #: the settings in force: as given, with the defaults filled in
        self.settings = dataclasses.replace(
            settings,
            endpoints=_config.DEFAULT_ENDPOINTS if settings.endpoints is None else settings.endpoints,
            ttl=self.ttl,
            guard=self.guard,
            call_timeout=self.call_timeout,
        )
        self.name = name
        self._clock: Clock = _clock.clock
        self.client = EtcdClient(
            parsed,
            tls=tls,
            user=user,
            password=password,
            call_timeout=self.call_timeout,
            keepalive_time=keepalive_time,
        )
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lease: Lease | None = None
        self._listeners: list[Listener] = []
        self._stats_hooks: list[StatsHook] = []
        self._names: dict[str, Stopper] = {}
        self._to_revoke: set[int] = set()
        # keys of stopped electors whose delete failed, retried on a thread of their own
        self._withdrawals = Withdrawals(self.client, self.call_timeout, name)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._closing = False
        #: leases granted so far (for status and tests)
        self.leases_granted = 0

    # -- lifecycle ----------------------------------------------------------------------

    def check_pid(self) -> None:
        """Raise ElectorStateError if used in a process other than the one that created it (after fork())."""
        if os.getpid() != self._pid:
            raise ElectorStateError(
                f"session {self.name!r} was created in process {self._pid} and used in {os.getpid()} "
                "after fork(); gRPC is not fork-safe: create electors in the process that uses them "
                "(for gunicorn, in the post_fork hook)"
            )

    def start(self) -> None:
        """Start the keepalive thread (idempotent); returns at once."""
        self.check_pid()
        with self._lock:
            if self._closed:
                raise ElectorStateError(f"session {self.name!r} is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=f"leaderelect-session-{self.name}", daemon=True)
            self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop every elector still on this session, stop renewing, revoke the lease (bounded
        by ``call_timeout``) and close the connection.

        Each elector still running is stopped as by its own ``stop()``: a leader resigns
        (``on_demoted`` gets :attr:`DemotionReason.SESSION_CLOSED`) before the lease is
        revoked. If the revoke cannot reach etcd, the lease expires by its TTL anyway.
        """
        if os.getpid() != self._pid:
            return  # a forked copy: the lease and the connection are the parent's
        with self._lock:
            if self._closed or self._closing:
                return
            self._closing = True  # no new elector from here on
            stoppers = list(self._names.values())
        try:
            # Outside the lock: each elector releases its name on the way out.
            waits = []
            for stop in stoppers:
                try:
                    waits.append(stop())
                except Exception:
                    log.exception("[%s] stopping an elector on close failed", self.name)
            for wait in waits:
                try:
                    wait()
                except Exception:
                    log.exception("[%s] waiting for an elector to stop failed", self.name)
        finally:
            with self._lock:
                self._closed = True
                thread = self._thread
        self._withdrawals.close(self.call_timeout + 1)
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout if timeout is not None else self.call_timeout * 2 + 1)
        lease = self._lease
        if lease is not None:
            lease.lose(LeaseEnd.CLOSED)
            self._to_revoke.add(lease.id)
        self._revoke_pending(final=True)
        self.client.close()

    def __enter__(self) -> Session:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once close() finished."""
        return self._closed

    # -- what the elections use -----------------------------------------------------------

    @property
    def lease(self) -> Lease | None:
        """The current lease while it is alive, else None."""
        lease = self._lease
        return lease if lease is not None and lease.alive() else None

    def _claim(self, name: str, stopper: Stopper) -> None:
        """Reserve election *name* for one elector: two electors of one name on one lease
        would share one key, and both would take it for their own term. ``close()`` calls
        *stopper* while the name is claimed."""
        with self._lock:
            if self._closed or self._closing:
                raise ElectorStateError(f"session {self.name!r} is closed")
            if name in self._names:
                raise ConfigurationError(
                    f"election {name!r} already has an elector on session {self.name!r}; "
                    "candidates of one election need sessions (leases) of their own"
                )
            self._names[name] = stopper

    def _release(self, name: str) -> None:
        """Free election *name* (its elector stopped)."""
        with self._lock:
            self._names.pop(name, None)

    def _defer_withdrawal(self, name: str, key: bytes, token: int | None, lease: Lease) -> None:
        """Delete *key* (election *name*'s candidate key, created at revision
        *token* if known), retrying until it is gone or *lease* ends (see ``_withdrawals``)."""
        self._withdrawals.add(name, key, token, lease)

    def _cancel_withdrawal(self, name: str) -> None:
        """An elector of *name* is about to campaign on this session (it may adopt
        the key): drop a predecessor's pending delete, after one in flight."""
        self._withdrawals.cancel(name)

    def remove_stats_hook(self, hook: StatsHook) -> None:
        """Stop calling *hook* (added with add_stats_hook)."""
        with self._lock:
            if hook in self._stats_hooks:
                self._stats_hooks.remove(hook)

    def _subscribe(self, listener: Listener) -> None:
        """*listener(kind, lease)* is called on the session thread; it must not block."""
        with self._lock:
            self._listeners.append(listener)

    def add_stats_hook(self, hook: StatsHook) -> None:
        """*hook(event, seconds)* is called on the session thread after each renewal; it must
        be quick and must not raise (metrics counters are)."""
        with self._lock:
            self._stats_hooks.append(hook)

    def _unsubscribe(self, listener: Listener) -> None:
        """Stop calling *listener* (added with subscribe)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _abandon(self, lease: Lease, reason: LeaseEnd) -> None:
        """Give *lease* up for good (its term is over); a new lease follows."""
        if lease.lose(reason):
            log.info("[%s] lease %x abandoned: %s", self.name, lease.id, reason)
            self._notify(LEASE_LOST, lease)
        self._wake.set()

    # -- the keepalive thread ---------------------------------------------------------------

    def _notify(self, kind: str, lease: Lease) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(kind, lease)

    def _run(self) -> None:
        while not self._stop.is_set():
            lease: Lease | None = None
            try:
                lease = self._grant()
                if lease is None:
                    return
                self._keep(lease)
            except Exception:  # a bug must not leave a silently dead thread: say it, go on
                log.exception("[%s] session failed; a new lease follows in 1 s", self.name)
                if lease is not None:
                    self._lose(lease, LeaseEnd.ERROR)
                if self._stop.wait(1.0):
                    return
            if lease is not None:
                with self._lock:
                    self._to_revoke.add(lease.id)

    def _grant(self) -> Lease | None:
        try:
            for attempt in retrying(self._stop, f"[{self.name}] lease grant"):
                with attempt:
                    self._revoke_pending()
                    t_send = self._clock()
                    lease_id, granted = self.client.lease_grant(self.ttl)
        except EtcdError:
            return None  # stopped while etcd was unreachable
        if self._stop.is_set():
            self._to_revoke.add(lease_id)
            return None
        lease = Lease(lease_id, granted, t_send + granted - self.guard, self._clock, sent_at=t_send)
        self._lease = lease
        self.leases_granted += 1
        log.debug("[%s] lease %x granted, ttl %d s", self.name, lease_id, granted)
        self._wake.clear()
        self._notify(LEASE_GRANTED, lease)
        return lease

    def _keep(self, lease: Lease) -> None:
        interval = lease.ttl / 3
        next_at = lease.valid_until - lease.ttl + self.guard + interval
        while not self._stop.is_set():
            if lease.lost_reason is not None:
                return
            now = self._clock()
            if now >= lease.valid_until:
                self._lose(lease, LeaseEnd.DEADLINE)
                return
            if now < next_at:
                # Wake at the next renewal, or at the deadline, whichever is first.
                if self._wake.wait(min(next_at, lease.valid_until) - now):
                    self._wake.clear()
                continue
            t_send = self._clock()
            # Running out of the budget moves to the next member (core.lease.renewal_budget).
            budget = renewal_budget(self.call_timeout, lease.ttl)
            left = lease.valid_until - t_send
            try:
                ttl = self.client.lease_keepalive(lease.id, timeout=min(budget, left), budget=budget <= left)
            except LeaseExpiredError:
                ttl = 0
            except EtcdError as err:
                log.warning("[%s] keepalive of lease %x failed: %s", self.name, lease.id, err)
                next_at = self._clock() + renewal_retry_wait(lease.remaining())
                continue
            if ttl <= 0:
                self._lose(lease, LeaseEnd.EXPIRED)
                return
            lease.extend(t_send + ttl - self.guard, sent_at=t_send)
            if not lease.alive():  # answered after the deadline: too late (see Lease.extend)
                self._lose(lease, LeaseEnd.DEADLINE)
                return
            next_at = t_send + interval
            with self._lock:
                hooks = list(self._stats_hooks)
            for hook in hooks:
                try:
                    hook("keepalive", self._clock() - t_send)
                except BaseException:  # a user's hook must not end the renewal thread
                    log.exception("[%s] stats hook failed", self.name)
            log.debug("[%s] lease %x renewed, %.3f s left", self.name, lease.id, lease.remaining())

    def _lose(self, lease: Lease, reason: LeaseEnd) -> None:
        if lease.lose(reason):
            log.warning("[%s] lease %x lost: %s", self.name, lease.id, reason)
            self._notify(LEASE_LOST, lease)

    def _revoke_pending(self, *, final: bool = False) -> None:
        # An abandoned lease may still be alive on the server (etcd refreshes leases after
        # an outage): revoke it so its keys go now, not a whole TTL later.
        with self._lock:
            pending = sorted(self._to_revoke)
        for lease_id in pending:
            try:
                self.client.lease_revoke(lease_id, timeout=self.call_timeout)
            except LeaseExpiredError:
                pass
            except EtcdError as err:
                if final:
                    log.info("[%s] revoke of lease %x failed (%s); it expires by its TTL", self.name, lease_id, err)
                    continue
                raise
            with self._lock:
                self._to_revoke.discard(lease_id)


class Membership:
    """Internal: what an elector (and its campaign thread) does on its session; not for
    user code. One per elector; the session keeps the state."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(self, name: str, stopper: Stopper) -> None:
        """Reserve election *name* for this elector (ConfigurationError if another has it);
        ``session.close()`` calls *stopper* while it is claimed."""
        self.session._claim(name, stopper)

    def release(self, name: str) -> None:
        """Free election *name*: the elector stopped."""
        self.session._release(name)

    def subscribe(self, listener: Listener) -> None:
        """*listener(kind, lease)* is called on the session thread (LEASE_GRANTED, LEASE_LOST);
        it must not block."""
        self.session._subscribe(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self.session._unsubscribe(listener)

    def abandon(self, lease: Lease, reason: LeaseEnd) -> None:
        """Give *lease* up for good (a term on it is over); a new lease follows."""
        self.session._abandon(lease, reason)

    def defer_withdrawal(self, name: str, key: bytes, token: int | None, lease: Lease) -> None:
        """Delete *key* (a stopped elector's candidate key, created at revision *token* if
        known) on the session's behalf, retrying until it is gone or *lease* ends."""
        self.session._defer_withdrawal(name, key, token, lease)

    def cancel_withdrawal(self, name: str) -> None:
        """An elector of *name* is about to campaign (it may adopt the key): drop a
        predecessor's pending delete, after one in flight."""
        self.session._cancel_withdrawal(name)
