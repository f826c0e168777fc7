"""A session: one etcd connection and one lease at a time, kept alive on the core's rules.

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
import random
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

from leaderelect import _clock, _config
from leaderelect._driver import Driver
from leaderelect._etcd import EtcdClient
from leaderelect.core.base import Config
from leaderelect.core.lease import LeaseEnd, LeaseState
from leaderelect.core.messages import Action, DemotionReason, Finished, WatchMessage
from leaderelect.core.session import SessionCore
from leaderelect.exceptions import ConfigurationError, ElectorStateError
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


class _Member:
    """A threaded elector's place on the session's core (``core.session.Member``): the core
    says when its key may join (``may_join``) and when a predecessor's delete in flight ended."""

    def __init__(self, name: str, core: SessionCore) -> None:
        self._name = name
        self._core = core
        #: set when a predecessor's delete that held this election's join was answered
        self.withdrawal_ended = threading.Event()

    @property
    def name(self) -> str:
        return self._name

    def lease_granted(self, now: float, lease: LeaseState) -> None:
        """The session tells its listeners (``Session._publish_lease``)."""

    def lease_lost(self, now: float, lease: LeaseState) -> None:
        """The session tells its listeners (``Session._publish_lease``)."""

    def watch_message(self, now: float, watch_id: int, message: WatchMessage) -> None:
        """Not watched through the core."""

    def delivered(self, now: float, seq: int) -> None:
        """No callbacks through the core."""

    def settle(self, now: float) -> None:
        """Nothing to finish."""

    def withdrawal_done(self, now: float) -> None:
        self.withdrawal_ended.set()

    def stop_for(self, now: float, reason: DemotionReason) -> None:
        # Session.close() stopped the elector (and waited for it) before closing the core.
        self._core.detach(self)


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
        # The lease and the withdrawals are decided by the core (core.session) and carried
        # out by the driver's threads; the session publishes each lease as a Lease.
        self._core = SessionCore(
            Config(name, b"", self.ttl, self.guard, self.call_timeout, 0.0), random.Random(), shared=True
        )
        self._driver = Driver(
            self._core,
            self.client,
            name=name,
            clock=self._clock,
            on_action=self._on_action,
            after_input=self._publish_lease,
            on_renewed=self._renewed,
        )
        self._lease: Lease | None = None
        # the core's leases not yet lost, and what user code sees of each
        self._leases: dict[int, tuple[LeaseState, Lease]] = {}
        self._current: LeaseState | None = None
        self._listeners: list[Listener] = []
        self._stats_hooks: list[StatsHook] = []
        self._names: dict[str, Stopper] = {}
        self._members: dict[str, _Member] = {}
        self._finished = threading.Event()
        self._started = False
        self._closed = False
        self._closing = False

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
        """Start keeping a lease (idempotent); returns at once."""
        self.check_pid()
        with self._lock:
            if self._closed:
                raise ElectorStateError(f"session {self.name!r} is closed")
            if self._started:
                return
            self._started = True
        self._driver.start()

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
        # The core revokes the lease (keys still waiting to be withdrawn go with it): a grant
        # or revoke in flight, then one revoke per lease left, each within call_timeout.
        self._driver.run(self._core.close)
        bound = timeout if timeout is not None else self.call_timeout * 3 + 1
        if not self._finished.wait(bound):
            log.info("[%s] the lease was not revoked within %.1f s; it expires by its TTL", self.name, bound)
        self._driver.close(bound)
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

    @property
    def leases_granted(self) -> int:
        """Leases granted so far (for status and tests)."""
        return self._core.lease_keeper.granted

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
            member = self._members[name] = _Member(name, self._core)
        self._driver.run(lambda now: self._core.attach(member))

    def _release(self, name: str) -> None:
        """Free election *name* (its elector stopped)."""
        with self._lock:
            self._names.pop(name, None)
            member = self._members.pop(name, None)
        if member is not None:
            self._driver.run(lambda now: self._core.detach(member))

    def _withdraw(self, name: str, key: bytes, token: int | None, lease: Lease) -> None:
        """Delete *key* (election *name*'s candidate key, created at revision *token* if
        known), retrying until it is gone or *lease* ends (``core.session``); returns once
        the first try is over (bounded by ``call_timeout``)."""
        tried = threading.Event()

        def withdraw(now: float) -> None:
            entry = self._leases.get(lease.id)
            if entry is None:
                tried.set()  # lost: the key goes with the lease
            else:
                self._core.withdraw(now, name, key.decode(), token, entry[0], lambda _: tried.set())

        self._driver.run(withdraw)
        tried.wait(self.call_timeout + 1)

    def _may_join(self, name: str) -> None:
        """An elector of *name* is about to join (it may adopt a predecessor's key): its
        pending delete is dropped now; one in flight is waited for (bounded)."""
        member = self._members.get(name)
        if member is None:
            return
        allowed: list[bool] = []

        def ask(now: float) -> None:
            member.withdrawal_ended.clear()
            allowed.append(self._core.may_join(name))

        deadline = self._clock() + self.call_timeout + 1
        for _ in range(100):  # each round waits for an answer or the deadline
            self._driver.run(ask)
            left = deadline - self._clock()
            if allowed[-1] or left <= 0:
                return
            member.withdrawal_ended.wait(left)

    def remove_stats_hook(self, hook: StatsHook) -> None:
        """Stop calling *hook* (added with add_stats_hook)."""
        with self._lock:
            if hook in self._stats_hooks:
                self._stats_hooks.remove(hook)

    def _subscribe(self, listener: Listener) -> None:
        """*listener(kind, lease)* is called on the session's threads; it must not block."""
        with self._lock:
            self._listeners.append(listener)

    def add_stats_hook(self, hook: StatsHook) -> None:
        """*hook(event, seconds)* is called on the session's renewal thread after each
        renewal; it must be quick and must not raise (metrics counters are)."""
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

        def lose(now: float) -> None:
            entry = self._leases.get(lease.id)
            if entry is not None:
                self._core.lease_keeper.lose(now, entry[0], reason)

        self._driver.run(lose)

    # -- from the driver (under its lock) ----------------------------------------------------

    def _notify(self, kind: str, lease: Lease) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(kind, lease)

    def _publish_lease(self, now: float) -> None:
        """Show the core's lease to user code: a new lease, a renewal, a loss.

        A renewal moves the published deadline only while it has not passed (see
        ``Lease.extend``): answered too late, it ends the lease in the core too.
        """
        state = self._core.lease_keeper.lease
        if state is not None and state is not self._current:
            self._current = state
            lease = Lease(state.id, state.ttl, state.valid_until, self._clock, sent_at=state.renewed_at)
            self._leases[state.id] = (state, lease)
            self._lease = lease
            log.debug("[%s] lease %x granted, ttl %d s", self.name, state.id, state.ttl)
            self._notify(LEASE_GRANTED, lease)
        for lease_id, (state, lease) in list(self._leases.items()):
            if state.lost is not None:
                del self._leases[lease_id]
                if lease.lose(state.lost):
                    log.warning("[%s] lease %x lost: %s", self.name, lease_id, state.lost)
                    self._notify(LEASE_LOST, lease)
            elif state.valid_until > lease.valid_until:
                lease.extend(state.valid_until, sent_at=state.renewed_at)
                if lease.valid_until < state.valid_until:  # its deadline passed meanwhile
                    self._core.lease_keeper.lose(now, state, LeaseEnd.DEADLINE)

    def _renewed(self, round_trip: float) -> None:
        with self._lock:
            hooks = list(self._stats_hooks)
        for hook in hooks:
            try:
                hook("keepalive", round_trip)
            except BaseException:  # a user's hook must not end the renewal lane
                log.exception("[%s] stats hook failed", self.name)

    def _on_action(self, action: Action) -> None:
        if isinstance(action, Finished) and action.origin == "":
            self._finished.set()


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
        """*listener(kind, lease)* is called on the session's threads (LEASE_GRANTED,
        LEASE_LOST); it must not block."""
        self.session._subscribe(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self.session._unsubscribe(listener)

    def abandon(self, lease: Lease, reason: LeaseEnd) -> None:
        """Give *lease* up for good (a term on it is over); a new lease follows."""
        self.session._abandon(lease, reason)

    def withdraw(self, name: str, key: bytes, token: int | None, lease: Lease) -> None:
        """Delete *key* (a stopped elector's candidate key, created at revision *token* if
        known), retrying until it is gone or *lease* ends; returns once the first try is over."""
        self.session._withdraw(name, key, token, lease)

    def may_join(self, name: str) -> None:
        """An elector of *name* is about to join (it may adopt the key): drop a
        predecessor's pending delete, after one in flight."""
        self.session._may_join(name)
