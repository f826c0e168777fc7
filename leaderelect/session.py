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
from leaderelect._threads import on_our_thread
from leaderelect.core.base import Config
from leaderelect.core.elector import ElectionCore
from leaderelect.core.lease import LeaseEnd, LeaseState
from leaderelect.core.messages import Action, Finished
from leaderelect.core.session import SessionCore
from leaderelect.exceptions import ConfigurationError, ElectorStateError
from leaderelect.settings import SessionOptions, Settings

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is 3.11+; only type checkers read it

log = logging.getLogger(__name__)

Clock = Callable[[], float]
#: ``hook(event, seconds)``: "keepalive" with the renewal's round trip (for metrics)
StatsHook = Callable[[str, float], None]
#: asks an elector to stop; returns a function that waits until it has
Stopper = Callable[[], Callable[[], None]]

#: ends of a lease that are no cause for a warning: a term over by stop() or resign() hands
#: its lease in, and close() revokes it
_EXPECTED = frozenset({LeaseEnd.TERM_ENDED, LeaseEnd.CLOSED})


def _no_stop() -> Callable[[], None]:
    """The stopper of an elector not made yet: nothing to stop, nothing to wait for."""
    return lambda: None


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
        # Everything is decided by the core (core.session: the lease, the withdrawals; and
        # core.elector for each election on it) and carried out by the driver's threads;
        # the session publishes each lease as a Lease.
        self._rng = random.Random()
        self._core = SessionCore(
            Config(name, b"", self.ttl, self.guard, self.call_timeout, 0.0), self._rng, shared=True
        )
        self._driver = self._make_driver()
        self._lease: Lease | None = None
        # the core's leases not yet lost, and what user code sees of each
        self._leases: dict[int, tuple[LeaseState, Lease]] = {}
        self._current: LeaseState | None = None
        self._stats_hooks: list[StatsHook] = []
        self._names: dict[str, Stopper] = {}
        # where each election's actions go, by origin ("" on a session of one election's own)
        self._handlers: dict[str, Callable[[Action], None]] = {}
        self._finished = threading.Event()
        self._started = False
        self._closed = False
        self._closing = False
        self._close_done = threading.Event()  # the close (whoever runs it) has finished
        self._longest_demote = 0.0  # of the electors that joined: how long a close may take

    def _make_driver(self) -> Driver:
        return Driver(
            self._core,
            self.client,
            name=self.name,
            clock=self._clock,
            on_action=self._on_action,
            after_input=self._publish_lease,
            on_renewed=self._renewed,
        )

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

        Called from a callback or a stats hook, it returns at once and the close completes on
        a thread of its own: it waits for the electors to stop, and an elector's
        ``on_demoted`` runs only after the callback that called this returned.
        """
        if os.getpid() != self._pid:
            return  # a forked copy: the lease and the connection are the parent's
        if on_our_thread():
            # Waiting here waited for this very thread: the close timed out, closed the lanes,
            # and the elector's delete after its on_demoted went nowhere; it never finished.
            name = f"leaderelect-close-{self.name}"
            threading.Thread(target=self._close, args=(timeout,), name=name, daemon=True).start()
            return
        if not self._close(timeout):
            # Another thread closes it (one handed off from a callback, say): return once it
            # is closed, so that a `with session:` block does not end with its lease unrevoked.
            bound = timeout if timeout is not None else self._longest_demote + 10 * self.call_timeout + 4
            if not self._close_done.wait(bound):
                log.warning("[%s] the close under way did not finish within %.1f s", self.name, bound)

    def _close(self, timeout: float | None) -> bool:
        """Close now; False if a close was already begun (this one does nothing)."""
        with self._lock:
            if self._closed or self._closing:
                return False
            self._closing = True  # no new elector from here on
            stoppers = list(self._names.values())
        try:
            self._close_begun(stoppers, timeout)
        finally:  # also if it failed: a close() waiting for this one must not wait in vain
            self._close_done.set()
        return True

    def _close_begun(self, stoppers: list[Stopper], timeout: float | None) -> None:
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

    def _own(self, config: Config) -> None:
        """Make this (not yet started) session one election's own: its lease ends with that
        election (revoked on stop; no key is left to withdraw)."""
        with self._lock:
            if self._started or self._names:
                raise ElectorStateError(f"session {self.name!r} is in use")
            self._core = SessionCore(config, self._rng, shared=False)
            self._driver = self._make_driver()

    def _join(self, config: Config, stopper: Stopper, on_action: Callable[[Action], None]) -> ElectionCore:
        """A new election on this session: reserve its name (two electors of one name on one
        lease would share one key, and both would take it for their own term), and make its
        core. ``close()`` calls *stopper* while the name is reserved; the election's actions
        go to *on_action* (under the driver's lock)."""
        name = config.name
        origin = name if self._core.shared else ""
        with self._lock:
            if self._closed or self._closing:
                raise ElectorStateError(f"session {self.name!r} is closed")
            if name in self._names:
                raise ConfigurationError(
                    f"election {name!r} already has an elector on session {self.name!r}; "
                    "candidates of one election need sessions (leases) of their own"
                )
            if not self._core.shared and self._names:
                raise ConfigurationError(
                    f"session {self.name!r} is the own session of the elector of {next(iter(self._names))!r}; "
                    "to share a lease between elections, make a Session and pass it to each elector"
                )
            # Reserved, but not stopped by close() until its core exists (close() stops
            # the cores on the session as it closes it).
            self._names[name] = _no_stop
            self._handlers[origin] = on_action
            self._longest_demote = max(self._longest_demote, config.demote_timeout)
        made: list[ElectionCore] = []
        try:
            self._driver.run(lambda now: made.append(ElectionCore(config, self._rng, session=self._core)))
        except BaseException:
            with self._lock:
                self._names.pop(name, None)
                if self._handlers.get(origin) is on_action:
                    del self._handlers[origin]
            raise
        with self._lock:
            if name in self._names:
                self._names[name] = stopper
        return made[0]

    def _release(self, name: str, core: ElectionCore) -> None:
        """Free election *name*: its elector stopped (a core that never started stops now)."""
        self._driver.run(lambda now: None if core.finished else core.stop(now))
        with self._lock:
            self._names.pop(name, None)
            self._handlers.pop(name if self._core.shared else "", None)

    def _lease_of(self, lease_id: int) -> Lease:
        """What user code sees of lease *lease_id* (a lost one reads as over)."""
        entry = self._leases.get(lease_id)
        return entry[1] if entry is not None else Lease(lease_id, 0, float("-inf"), self._clock)

    def remove_stats_hook(self, hook: StatsHook) -> None:
        """Stop calling *hook* (added with add_stats_hook)."""
        with self._lock:
            if hook in self._stats_hooks:
                self._stats_hooks.remove(hook)

    def add_stats_hook(self, hook: StatsHook) -> None:
        """*hook(event, seconds)* is called on the session's renewal thread after each
        renewal; it must be quick and must not raise (metrics counters are)."""
        with self._lock:
            self._stats_hooks.append(hook)

    # -- from the driver (under its lock) ----------------------------------------------------

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
        for lease_id, (state, lease) in list(self._leases.items()):
            if state.lost is not None:
                del self._leases[lease_id]
                if lease.lose(state.lost):
                    log.log(
                        logging.INFO if state.lost in _EXPECTED else logging.WARNING,
                        "[%s] lease %x given up: %s",
                        self.name,
                        lease_id,
                        state.lost,
                    )
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
        if isinstance(action, Finished) and action.origin == "" and self._core.closing:
            self._finished.set()  # close() is done
            return
        handler = self._handlers.get(action.origin)
        if handler is not None:
            handler(action)


class Membership:
    """Internal: what an elector does on its session; not for user code. One per elector;
    the session keeps the state."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def own(self, config: Config) -> None:
        """The session is this election's alone (made by the elector for itself)."""
        self.session._own(config)

    def join(self, config: Config, stopper: Stopper, on_action: Callable[[Action], None]) -> ElectionCore:
        """Reserve election *config.name* (ConfigurationError if another elector has it) and
        make its core; ``session.close()`` calls *stopper* while it is reserved. The core's
        actions go to *on_action*, under the driver's lock: it must not block, and feeds
        the core only through :meth:`later`."""
        return self.session._join(config, stopper, on_action)

    def release(self, name: str, core: ElectionCore) -> None:
        """Free election *name*: the elector stopped."""
        self.session._release(name, core)

    def close_owned(self) -> None:
        """Close the session the elector made for itself, here and now (once its name is
        released nothing on it waits for the caller's thread, which may be a callback's:
        a failed start() or a stop() of an elector that never started)."""
        self.session._close(None)

    def run(self, step: Callable[[float], object]) -> None:
        """Feed the cores one input, ``step(now)``, and carry out what they ask for."""
        self.session._driver.run(step)

    def later(self, step: Callable[[float], object]) -> None:
        """Feed *step* once the actions being carried out are (from ``on_action``)."""
        self.session._driver.later(step)

    def schedule(self, at: float, step: Callable[[float], object]) -> None:
        """Feed *step* at clock reading *at*."""
        self.session._driver.schedule(at, step)

    def lease(self, lease_id: int) -> Lease:
        """What user code sees of lease *lease_id* (for a term on it)."""
        return self.session._lease_of(lease_id)
