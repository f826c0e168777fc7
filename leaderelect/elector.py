"""LeaderElector: one process's part in an etcd election, with callbacks.

Guarantees, and their limits:

* **One leader at a time, by the local clock.** A leader demotes itself when its lease's
  local deadline passes without a renewal — ``t_send + granted_ttl - guard``, where
  ``t_send`` is when the last successful renewal was *sent*, on :func:`leaderelect.clock`
  (CLOCK_BOOTTIME on Linux, so a suspended host's deadline passes while it sleeps). etcd
  cannot expire the lease, and so cannot elect a successor, before ``t_send + granted_ttl``.
  ``is_leader`` is computed from that deadline on every read, so a paused or GIL-starved
  process reads False the instant it resumes late. What this cannot cover: code that
  checked ``is_leader`` and is then paused before acting. That is what fencing is for.
* **Fencing.** Each term has a token, the leader key's create revision, which only grows.
  :meth:`LeaderElector.fenced_txn` writes to etcd only while that key still exists with
  that revision, so etcd itself rejects a deposed leader's writes. A resource outside
  etcd is protected only if it checks the token itself (reject tokens lower than the
  highest seen).
* **Terms never resume.** After a lease is lost or its deadline passes, the lease is
  abandoned and revoked, and the next campaign uses a new lease, a new key, a higher token.
* **Callbacks** run on one dispatcher thread in the order of the transitions:
  ``on_demoted`` exactly once after each ``on_elected`` (on stop, resign and loss too),
  never without one. A slow or raising callback never delays renewal or demotion. On
  ``stop()`` and ``resign()`` the key is deleted only after ``on_demoted`` returned (or
  ``demote_timeout`` passed), so a successor never starts while this one is stopping.
* **Liveness.** After a crash, a successor leads within the TTL plus etcd's expiry lag
  (~0.2-0.5 s); after a graceful stop or resign, within milliseconds.

Not guaranteed: anything during a pause longer than the TTL *except* that ``is_leader``
reads False on resume and ``on_demoted`` fires; the order of callbacks across processes.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from leaderelect import _clock, _config, _observer, election, settings
from leaderelect._dispatch import Dispatcher
from leaderelect._observer import NoObserver, Observer
from leaderelect.core.base import Config
from leaderelect.core.messages import (
    Action,
    Call,
    CloseWatch,
    Deliver,
    Demoted,
    Elected,
    Entry,
    Failed,
    Failure,
    Finished,
    LeaderChanged,
    OpenWatch,
    ResignDone,
    Snapshot,
    WatchCreated,
    WatchEnded,
    WatchState,
)
from leaderelect.core.queue import View
from leaderelect.exceptions import ConfigurationError, ElectorStateError, NotLeaderError
from leaderelect.session import Membership, Session
from leaderelect.settings import ConnectionOptions
from leaderelect.term import Candidate, DemotionReason, Leader, Observation, Term, mark_ended

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is 3.11+; only type checkers read it

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_NEW, _RUNNING, _STOPPING, _STOPPED = "new", "running", "stopping", "stopped"


class LeaderElector:
    """Campaign for leadership of *name* and follow who leads.

    .. code-block:: python

        elector = LeaderElector("scheduler", endpoints="127.0.0.1:2379", ttl=10)

        @elector.on_elected
        def start_jobs(term): ...

        @elector.on_demoted
        def stop_jobs(term, reason): ...

        with elector:
            elector.wait_elected(timeout=5)

    Subclasses may override :meth:`elected`, :meth:`demoted` and :meth:`leader_changed`
    instead of registering callbacks; the hook runs first, then registered callbacks.

    :param name: the election name; keys are ``<name>/<lease id in hex>``.
    :param value: what this candidate proclaims (str or bytes); default ``host:pid``.
    :param demote_timeout: how long ``stop()``/``resign()`` wait for ``on_demoted`` before
        deleting the key anyway, in seconds (default: the lease's ttl).
    :param session: share one lease and connection with other electors; then give no
        connection settings here (they are the session's).
    :param options: without a shared session, the connection and lease settings of the
        session this elector makes for itself: ``endpoints``, ``ttl``, ``guard``,
        ``call_timeout``, ``tls_*``, ``user``, ``password``, ``keepalive_time`` — the fields
        of :class:`~leaderelect.Settings`, where each is documented (``ttl`` 10 s: a crashed
        leader is replaced after about this long; the leader renews every ttl/3).
    :raises ConfigurationError: for any invalid setting.
    """

    def __init__(
        self,
        name: str,
        value: str | bytes | None = None,
        *,
        session: Session | None = None,
        demote_timeout: float | None = None,
        **options: Unpack[ConnectionOptions],
    ) -> None:
        self.name = _config.check_name(name)
        self._value = _config.check_value(value)
        # an unknown name is a TypeError that lists the known ones (with or without a session)
        settings.Settings.of(options, also=("value", "session", "demote_timeout"))
        if session is not None:
            mine = sorted(settings.given(options))
            if mine:
                raise ConfigurationError(f"{', '.join(mine)} belong to the shared session, not the elector")
            if not isinstance(session, Session):
                raise ConfigurationError(f"session must be a leaderelect.Session, not {type(session).__name__}")
            self._session, self._owns_session = session, False
        else:
            self._session = Session(name=self.name, **options)
            self._owns_session = True
        self.ttl = self._session.ttl
        self.demote_timeout = (
            float(self.ttl)
            if demote_timeout is None
            else _config.check_number("demote_timeout", demote_timeout, allow_zero=True)
        )
        self._membership = Membership(self._session)
        config = Config(
            self.name, self._value, self.ttl, self._session.guard, self._session.call_timeout, self.demote_timeout
        )
        if self._owns_session:
            self._membership.own(config)  # the session's lease is this election's alone
        self._clock = _clock.clock
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = _NEW
        self._term: Term | None = None
        self._callbacks: dict[str, list[Callable[..., Any]]] = {"elected": [], "demoted": [], "leader_changed": []}
        self._dispatcher = Dispatcher(self.name, slow_after=self.ttl / 3, clock=self._clock)
        self._finished = threading.Event()  # set once everything of the elector is released
        self._finishing = False
        self._starting = False
        self._stop_during_start: DemotionReason | None = None
        self._finisher: threading.Thread | None = None
        self._stop_deadline: float | None = None  # the earliest bound a stop() waits for
        # (guarded by the session's driver) the core's watch of the queue, and its read of
        # the queue that waits for the observer; the resign() calls waiting for their answer
        self._watch: int | None = None
        self._read: Call | None = None
        self._resigns: dict[int, tuple[threading.Event, list[bool]]] = {}
        self._stats_hooks: list[Callable[[str, float], None]] = []
        # Held while the hooks run: once _finish() has cleared _hooks_attached under it, no
        # hook is running and none will (reentrant: a hook may add a hook).
        self._hooks_lock = threading.RLock()
        self._hooks_attached = False
        self._in_hook = threading.local()  # a stop() from a hook must not wait for the hook
        # With transport keepalive the probe is only a backstop; without it, it is the only
        # way to notice a silent stream, so it runs often.
        self._probe_interval = 30.0 if self._session.settings.keepalive_time else min(5.0, max(1.0, self.ttl / 2))
        self._observer: Observer | NoObserver = NoObserver()
        #: terms won and demotions by reason, for status() and metrics
        self.elections = 0
        self.demotions: dict[str, int] = {}
        # Last: a session's close() may stop this elector from here on. The core decides
        # (core.elector.ElectionCore); the session's driver carries its actions out.
        self._core = self._membership.join(config, self._stop_for_session, self._on_action)

    @classmethod
    def from_etcd3_client(
        cls, client: Any, name: str, value: str | bytes | None = None, **kwargs: Any
    ) -> LeaderElector:
        """An elector on the same etcd as a python-etcd3 client (``etcd3.client(...)``).

        Takes the client's endpoints and TLS credentials. The client keeps only an expiring
        token, not the password: with auth, pass ``user=`` and ``password=`` again. The
        elector opens its own connection (with its own deadlines and failover), so closing
        the client does not affect it. Other keywords are those of the constructor.

        :raises ConfigurationError: when the client's settings cannot be used.
        """
        from leaderelect._etcd3compat import connection_from

        return cls(name, value, **connection_from(client, kwargs))

    # -- callback registration ------------------------------------------------------------

    def _register(self, kind: str, fn: F) -> F:
        if not callable(fn):
            raise ConfigurationError(f"on_{kind} needs a callable, not {fn!r}")
        with self._lock:
            self._callbacks[kind].append(fn)
        return fn

    def on_elected(self, fn: F) -> F:
        """Register ``fn(term)``, called when this process becomes leader. Usable as a decorator."""
        return self._register("elected", fn)

    def on_demoted(self, fn: F) -> F:
        """Register ``fn(term, reason)``, called once after each ``on_elected`` when the term ends."""
        return self._register("demoted", fn)

    def on_leader_changed(self, fn: F) -> F:
        """Register ``fn(leader)``, called when the observed leader changes (None: none or
        unknown). If it changes again while that call still waits behind another callback,
        the waiting call gets the newest leader instead of a second call being queued."""
        return self._register("leader_changed", fn)

    # Hooks for subclasses; they run before registered callbacks.
    def elected(self, term: Term) -> None:
        """Subclass hook: this process became leader."""

    def demoted(self, term: Term, reason: DemotionReason) -> None:
        """Subclass hook: the term ended."""

    def leader_changed(self, leader: Leader | None) -> None:
        """Subclass hook: the observed leader changed."""

    def _fire(self, kind: str, *args: Any, then: Callable[[], None] | None = None) -> None:
        """Queue the callbacks of *kind*; *then()* runs on the dispatcher once they returned."""
        with self._lock:
            callbacks = list(self._callbacks[kind])
        if getattr(type(self), kind) is not getattr(LeaderElector, kind):
            callbacks.insert(0, getattr(self, kind))  # the subclass hook runs first
        if not callbacks and then is None:  # do not wake the dispatcher (500 electors in a process)
            return
        # A leader change still waiting to run is updated, not queued again (see on_leader_changed).
        self._dispatcher.submit(f"on_{kind}", callbacks, *args, latest_only=kind == "leader_changed", then=then)

    # -- lifecycle ---------------------------------------------------------------------------

    def _forked(self) -> bool:
        """True in a child process forked from the one that created this elector. Checked
        before any lock is taken: a lock held by one of our threads at fork() stays held in
        the child for ever."""
        return os.getpid() != self._pid

    def _check_pid(self) -> None:
        if self._forked():
            raise ElectorStateError(self._fork_message())

    def _fork_message(self) -> str:
        return (
            f"elector {self.name!r} was created in process {self._pid} and used in {os.getpid()} after "
            "fork(); gRPC is not fork-safe: create the elector in the process that uses it "
            "(for gunicorn, in the post_fork hook; for uWSGI, with --lazy-apps or @postfork; "
            "for multiprocessing, in the child or with the 'spawn' start method)"
        )

    def start(self) -> LeaderElector:
        """Start campaigning in daemon threads; returns at once.

        An unreachable etcd is retried in the background with logged backoff. If starting
        fails, nothing is left running and the elector is stopped (``stop()`` is a no-op).

        :raises ElectorStateError: if started before, used after ``fork()``, or its shared
            session was closed.
        """
        self._check_pid()
        with self._lock:
            if self._state == _STOPPED:
                raise ElectorStateError(f"elector {self.name!r} is stopped (or its session closed); make a new one")
            if self._state != _NEW:
                raise ElectorStateError(f"elector {self.name!r} was already started (state: {self._state})")
            self._state = _RUNNING
            self._starting = True  # a stop meanwhile waits for the end of start()
        try:
            self._dispatcher.start()
            self._session.start()
            with self._hooks_lock:
                self._hooks_attached = True
            self._session.add_stats_hook(self._stats)
            self._session.client.failover_hooks.append(self._reconnected)
            self._observer = _observer.acquire(
                self._session.client, self.name, self._on_view, probe_interval=self._probe_interval, clock=self._clock
            )
            self._membership.run(self._core.start)
        except BaseException:
            log.warning("[%s] start() failed; releasing what it took", self.name)
            with self._lock:
                self._starting = False
            self._finishing = True  # finished here, not on a thread of its own
            try:
                self._membership.run(lambda now: self._core.stop(now))
            finally:
                self._finish()
            raise
        with self._lock:
            self._starting = False
            stop, self._stop_during_start = self._stop_during_start, None
        if stop is not None:  # stop() or the session's close() came while it started
            self._membership.run(lambda now: self._core.stop(now, stop))
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Resign if leading, revoke the lease (if the elector owns its session), join every thread.

        Idempotent, and always returns: within *timeout* seconds if given, else within
        ``demote_timeout + 4 * call_timeout + 2`` seconds. Called from a callback or a stats
        hook, it returns at once and the shutdown completes when the callback returns. A
        callback still running when it returns keeps its thread (a warning says so).

        :raises ElectorStateError: in a process forked from the one that created the elector
            (there is nothing of it to stop there; the message says where to create it).
        """
        self._check_pid()
        self._request_stop(DemotionReason.STOPPED, timeout)()

    def _stop_for_session(self) -> Callable[[], None]:
        """Called by a shared session's ``close()``: stop, and return how to wait for it."""
        return self._request_stop(DemotionReason.SESSION_CLOSED, None)

    def _request_stop(self, reason: DemotionReason, timeout: float | None) -> Callable[[], None]:
        """Begin stopping (a leader's term ends with *reason*); returns a function that waits
        for the end, bounded by *timeout* or by the default bound of ``stop()``."""
        bound = timeout if timeout is not None else self.demote_timeout + 4 * self._session.call_timeout + 2
        deadline = self._clock() + bound
        with self._lock:
            # Before the core is told: the finish keeps within the latest bound asked for.
            if self._stop_deadline is None or deadline > self._stop_deadline:
                self._stop_deadline = deadline
            state = self._state
            deferred = self._starting
            if state in (_NEW, _STOPPED):
                self._state = _STOPPED
                self._changed.notify_all()
            else:
                self._state = _STOPPING  # the core keeps the first reason
                if deferred:  # start() stops the core once it has taken everything
                    self._stop_during_start = self._stop_during_start or reason
        if state == _NEW:
            self._finishing = True  # nothing to finish on a thread of its own
            self._release_session()
        if state in (_NEW, _STOPPED):
            return _no_wait
        if not deferred:
            self._membership.run(lambda now: self._core.stop(now, reason))
        if (
            self._dispatcher.in_dispatcher()
            or threading.current_thread() is self._finisher
            or getattr(self._in_hook, "active", False)  # the finish waits for the hook to return
        ):
            return _no_wait

        def wait() -> None:
            if not self._finished.wait(max(0.0, deadline - self._clock())):
                log.warning("[%s] stop() did not finish within %.1f s", self.name, bound)
                return
            # _finished is the finisher thread's last step: wait for it to end as well, so
            # that stop() leaves no thread of ours behind, not even one on its way out.
            finisher = self._finisher
            if finisher is not None:
                finisher.join(max(0.0, deadline - self._clock()))

        return wait

    def __enter__(self) -> LeaderElector:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _finish(self) -> None:
        """Runs once the core finished (on a thread of its own), or in a failed start():
        release everything this elector holds. Each step runs even if one before it failed,
        and the elector reads as stopped at the end whatever happened (a finisher that died
        halfway left stop() waiting out its bound and the callbacks thread running)."""
        steps = (self._release_observer, self._detach_hooks, self._release_name, self._close_owned_session)
        for step in (*steps, self._close_dispatcher):
            try:
                step()
            except Exception:
                log.exception("[%s] releasing what the elector held failed (%s)", self.name, step.__name__)
        with self._lock:
            self._state = _STOPPED
            self._changed.notify_all()
        self._finished.set()

    def _release_observer(self) -> None:
        observer, self._observer = self._observer, NoObserver()
        if isinstance(observer, Observer):
            _observer.release(self._session.client, observer, self._on_view, self._session.call_timeout + 1)

    def _detach_hooks(self) -> None:
        with self._hooks_lock:  # waits for a hook running now
            self._hooks_attached = False
        self._session.remove_stats_hook(self._stats)
        if self._reconnected in self._session.client.failover_hooks:
            self._session.client.failover_hooks.remove(self._reconnected)

    def _close_dispatcher(self) -> None:
        # Callbacks still queued run first. Within what is left of a stop()'s bound: a hung
        # on_demoted has had its demote_timeout already, and waiting for it again here took
        # stop() past its bound, returning with the elector still "stopping".
        wait = self.demote_timeout + 1
        deadline = self._stop_deadline
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - self._clock() - 0.5))
        self._dispatcher.close(wait)

    def _release_session(self) -> None:
        self._release_name()
        self._close_owned_session()

    def _release_name(self) -> None:
        self._membership.release(self.name, self._core)

    def _close_owned_session(self) -> None:
        if self._owns_session:
            self._membership.close_owned()

    # -- instrumentation -----------------------------------------------------------------------

    def add_stats_hook(self, hook: Callable[[str, float], None]) -> None:
        """Call ``hook(event, seconds)`` while this elector runs: ``("keepalive", round trip)``
        after each lease renewal, ``("reconnect", 0.0)`` when the connection moves to another
        etcd member. It runs on leaderelect's threads: it must be quick and must not raise.
        Detached when the elector stops, also from a shared session: none runs once
        ``stop()`` returned, and ``stop()`` waits for one running (called from a hook, it
        returns at once). ``leaderelect.metrics`` uses this."""
        with self._hooks_lock:
            self._stats_hooks.append(hook)

    def _stats(self, event: str, seconds: float) -> None:
        """The elector's one hook on its session (and its client): runs the stats hooks
        while the elector runs, never after ``stop()`` returned (a copy of the list taken
        by a renewal just before the hooks were detached ran them once more)."""
        with self._hooks_lock:
            if not self._hooks_attached:
                return
            outer = getattr(self._in_hook, "active", False)  # (a hook's etcd call may fail over)
            self._in_hook.active = True
            try:
                for hook in tuple(self._stats_hooks):  # one added by a hook runs from the next event
                    try:
                        hook(event, seconds)
                    except BaseException:  # a user's hook must not end our thread, nor skip the others
                        log.exception("[%s] stats hook failed", self.name)
            finally:
                self._in_hook.active = outer

    def _reconnected(self, _endpoint: Any) -> None:
        self._stats("reconnect", 0.0)

    # -- state -----------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The :class:`Session` this elector runs on (its own, or the one it was given): its
        ``lease`` and its connection, for tools that read etcd the way the elector does."""
        return self._session

    @property
    def pid(self) -> int:
        """The process this elector belongs to (it cannot be used in another, e.g. after fork)."""
        return self._pid

    @property
    def value(self) -> str:
        """The value this candidate shows (as text; ``proclaim()`` changes it)."""
        return self._value.decode("utf-8", "replace")

    @property
    def is_leader(self) -> bool:
        """True while this process leads; computed from the local deadline on every read.

        Always False in a process forked from the one that created the elector: the copy
        of a leader is not a leader (its threads and its connection were not copied).
        """
        if self._forked():
            return False
        with self._lock:
            term = self._term
        return term is not None and term.valid_for() > 0

    @property
    def term(self) -> Term | None:
        """The current term, or None when not leading (always None in a forked copy)."""
        if self._forked():
            return None
        with self._lock:
            term = self._term
        return term if term is not None and term.valid_for() > 0 else None

    @property
    def leader(self) -> Leader | None:
        """The observed leader, or None when there is none or it is not known right now."""
        return self.observation.leader

    @property
    def observation(self) -> Observation:
        """What this process knows of the leader; unknown in a forked copy, which follows nothing."""
        if self._forked():  # before the observer's lock (see _forked)
            return Observation(None, False, math.inf)
        view = self._observer.view
        return Observation(view.leader if view.known else None, view.known, self._clock() - view.observed_at)

    @property
    def stopped(self) -> bool:
        """True once stopped; also in a forked copy, where it never ran."""
        if self._forked():  # before the lock (see _forked)
            return True
        with self._lock:
            return self._state == _STOPPED

    def wait_elected(self, timeout: float | None = None) -> bool:
        """Block until this process leads (True) or *timeout* seconds pass (False)."""
        self._check_pid()

        def leads_or_stopped() -> bool:  # under the lock
            term = self._term
            return (term is not None and term.valid_for() > 0) or self._state == _STOPPED

        # A term past its deadline whose end the core has not delivered yet (its timer is a
        # moment late, or the session's lock is busy) is not leading: wait for the next one,
        # do not return False at once (a restart of etcd found it that way).
        with self._changed:
            self._changed.wait_for(leads_or_stopped, timeout)
        return self.is_leader

    def status(self) -> dict[str, Any]:
        """A plain dict for health endpoints (JSON-serialisable).

        ``role`` ("leader", "candidate" or "stopped"), ``leader`` (the observed leader's value,
        None when none or unknown), ``leader_known``, ``observation_age`` (s), ``token`` and
        ``valid_for`` (s left in this term; None unless leading), ``lease_remaining`` (s),
        ``last_renewal_age`` (s since the last successful renewal was sent), ``elections``,
        ``demotions`` (by reason), ``reconnects``, ``endpoint``, ``pid``, ``error`` (None, or
        what is wrong). In a process forked from the elector's, ``role`` is "forked copy".
        """
        if self._forked():  # touch no lock: a thread of the parent may have held it at fork()
            return {
                "name": self.name,
                "role": "forked copy",
                "leader": None,
                "leader_known": False,
                "observation_age": None,
                "token": None,
                "valid_for": None,
                "lease_remaining": None,
                "last_renewal_age": None,
                "elections": self.elections,
                "demotions": dict(self.demotions),
                "reconnects": self._session.client.reconnects,
                "endpoint": None,
                "pid": os.getpid(),
                "error": self._fork_message(),
            }
        term, obs = self.term, self.observation
        lease = self._session.lease
        return {
            "name": self.name,
            "role": "leader" if term is not None else "candidate" if not self.stopped else "stopped",
            "leader": obs.leader.value if obs.leader else None,
            "leader_known": obs.known,
            "observation_age": round(obs.age, 3),
            "token": term.token if term else None,
            # from the term itself: a second reading of the clock could fall past its deadline
            "valid_for": round(term.valid_for(), 3) if term else None,
            "lease_remaining": round(lease.remaining(), 3) if lease else None,
            "last_renewal_age": round(self._clock() - lease.renewed_at, 3) if lease else None,
            "elections": self.elections,
            "demotions": dict(self.demotions),
            "reconnects": self._session.client.reconnects,
            "endpoint": str(self._session.client.current_endpoint),
            "pid": os.getpid(),
            "error": None,
        }

    # -- leader operations -------------------------------------------------------------------

    def _current_term(self, term: Term | None) -> Term:
        current = self.term
        if term is None:
            if current is None:
                raise NotLeaderError(f"not the leader of {self.name!r}")
            return current
        return term

    def proclaim(self, value: str | bytes) -> bool:
        """Change the value this leader shows to observers.

        Like :meth:`fenced_txn`: True when etcd applied it, False (nothing written) when the
        term turned out to be over before it could.

        :raises NotLeaderError: when not leading at the call.
        :raises EtcdUnavailableError: when etcd cannot be reached within ``call_timeout``
            (after a timeout the change may or may not have been applied).
        """
        self._check_pid()
        raw = _config.check_value(value)
        term = self._current_term(None)
        if not election.proclaim(self._session.client, term.key.encode(), term.token, raw, term.lease_id):
            return False
        self._value = raw
        self._membership.run(lambda now: self._core.set_value(raw))  # what later terms join with
        return True

    def fenced_txn(
        self,
        puts: Mapping[str | bytes, str | bytes] | None = None,
        deletes: Iterable[str | bytes] = (),
        *,
        term: Term | None = None,
    ) -> bool:
        """Apply *puts* and *deletes* in one etcd transaction, only within *term*.

        *term* defaults to the current one. etcd applies the writes only while the term's
        leader key still has the term's create revision, so a deposed leader's write is
        rejected by etcd itself. Returns False (nothing written) when the term is over.

        :raises NotLeaderError: when no term is given and this process does not lead.
        :raises EtcdUnavailableError: when etcd cannot be reached within ``call_timeout``
            (after a timeout the writes may or may not have been applied, as with any etcd
            write: make them idempotent, or read them back).
        """
        self._check_pid()
        term = self._current_term(term)
        current = self.term
        if current is None or current.token != term.token:
            return False
        encoded = {_bytes(k): _bytes(v) for k, v in (puts or {}).items()}
        return election.fenced_txn(
            self._session.client, term.key.encode(), term.token, encoded, [_bytes(k) for k in deletes]
        )

    def fenced_put(self, key: str | bytes, value: str | bytes, *, term: Term | None = None) -> bool:
        """:meth:`fenced_txn` with a single put."""
        return self.fenced_txn({key: value}, term=term)

    def resign(self, cooldown: float = 0.0, timeout: float | None = None) -> bool:
        """Step down (if leading) and campaign again after *cooldown* seconds.

        Returns True if this process was leader and stepped down. The key is deleted after
        ``on_demoted`` returned. Called from a callback, it returns at once (True if it was
        leader at the call) and the hand-over completes after the callback.
        """
        self._check_pid()
        cooldown = _config.check_number("cooldown", cooldown, allow_zero=True)
        with self._lock:
            if self._state != _RUNNING:
                raise ElectorStateError(f"elector {self.name!r} is not running (state: {self._state})")
            leading = self._term is not None
        done = threading.Event()
        result: list[bool] = []

        def resign(now: float) -> list[Action]:
            request, actions = self._core.resign(now, cooldown)
            self._resigns[request] = (done, result)  # before its ResignDone is carried out
            return actions

        self._membership.run(resign)
        if self._dispatcher.in_dispatcher():
            return leading
        done.wait(timeout if timeout is not None else self.demote_timeout + 4 * self._session.call_timeout + 2)
        return bool(result and result[0])

    def participants(self) -> list[Candidate]:
        """Every candidate in queue order, the leader first (read from etcd now)."""
        self._check_pid()
        return election.participants(self._session.client, self.name)[0]

    # -- the core's actions (under the session's driver; never block, never feed the core) --------

    def _on_action(self, action: Action) -> None:
        if isinstance(action, Deliver):
            self._deliver(action)
        elif isinstance(action, Call):  # a read of the queue: the observer answers it
            self._read_queue(action)
        elif isinstance(action, OpenWatch):
            self._watch = action.watch_id
            self._membership.later(self._follow)
        elif isinstance(action, CloseWatch):
            if self._watch == action.watch_id:
                self._watch = None
        elif isinstance(action, ResignDone):
            done, result = self._resigns.pop(action.request, (None, []))
            if done is not None:
                result.append(action.stepped_down)
                done.set()
        elif isinstance(action, Finished) and not self._finishing:
            # Released on a thread of its own: a callback that hangs must not keep the
            # lease (and the key) alive, and a session's close() waits for this.
            self._finishing = True
            # (not marked as ours: it must wait for an owned session's close, not hand it off)
            self._finisher = threading.Thread(target=self._finish, name=f"leaderelect-finish-{self.name}", daemon=True)
            self._finisher.start()

    def _deliver(self, action: Deliver) -> None:
        callback = action.callback
        if isinstance(callback, Elected):
            info = callback.term
            term = Term(
                self.name,
                info.key,
                info.token,
                info.lease_id,
                info.value.decode("utf-8", "replace"),
                info.elected_at,
                self._membership.lease(info.lease_id),
            )
            with self._changed:  # is_leader reads it from here on, before on_elected runs
                self._term = term
                self.elections += 1
                self._changed.notify_all()
            log.info("[%s] elected, token %d, key %s", self.name, term.token, term.key)
            self._fire("elected", term)
        elif isinstance(callback, Demoted):
            with self._changed:
                ended, self._term = self._term, None
                if ended is not None:
                    mark_ended(ended)
                reason = callback.reason
                self.demotions[reason.value] = self.demotions.get(reason.value, 0) + 1
                self._changed.notify_all()
            if ended is None:  # cannot be: the core delivers Demoted only after Elected
                log.error("[%s] a demotion without a term", self.name)
                return
            log.info("[%s] demoted (%s), token %d", self.name, reason, ended.token)
            seq = action.seq
            # The core hands over (deletes the key) once on_demoted returned.
            self._fire(
                "demoted",
                ended,
                reason,
                then=lambda: self._membership.later(lambda now: self._core.callback_done(now, seq)),
            )
        elif isinstance(callback, LeaderChanged):
            leader = callback.leader
            log.info("[%s] leader changed: %s", self.name, leader if leader else "none or unknown")
            self._fire("leader_changed", leader)

    # -- following the queue: the process's one observer feeds the core -------------------------

    def _read_queue(self, call: Call) -> None:
        """The core reads the queue: from the observer's latest publication once it is
        known (at once if it is); while it is not, a core that still shows a known view is
        told at once (its view turns unknown now), else the read waits (to its deadline)."""
        view, _ = self._observer.published()
        if view.known or self._core.view.known:
            self._membership.later(lambda now: self._answer_read(now, call))
        else:
            self._read = call
            self._membership.schedule(self._clock() + call.timeout, lambda now: self._read_timed_out(now, call))

    def _answer_read(self, now: float, call: Call) -> list[Action]:
        if self._read is call:
            self._read = None
        view, queue = self._observer.published()
        if not view.known:
            return self._core.answer(now, call.call_id, Failed(Failure.UNAVAILABLE, "the observer resyncs"))
        entries = tuple(Entry(c.key, c.raw_value, c.token, c.mod_revision, c.lease_id) for c in queue.ordered())
        return self._core.answer(now, call.call_id, Snapshot(view.revision, entries))

    def _read_timed_out(self, now: float, call: Call) -> list[Action]:
        if self._read is not call:
            return []
        self._read = None
        return self._core.answer(now, call.call_id, Failed(Failure.TIMEOUT, "the observer did not resync in time"))

    def _follow(self, now: float) -> list[Action]:
        """The core's watch opened: confirm it, with the queue as the observer has it now."""
        watch = self._watch
        if watch is None:
            return []
        view, queue = self._observer.published()
        actions = self._core.watch(now, watch, WatchCreated())
        if view.known:
            actions += self._core.watch(now, watch, WatchState(view.revision, queue))
        return actions

    def _on_view(self, view: View) -> None:
        """A publication of the observer (on its thread; never blocks for long)."""

        def feed(now: float) -> list[Action]:
            if self._read is not None and view.known:
                return self._answer_read(now, self._read)
            watch = self._watch
            if watch is None:
                return []
            published, queue = self._observer.published()  # this publication's (or, once stopped, none)
            if not published.known:
                self._watch = None
                return self._core.watch(now, watch, WatchEnded("the observer resyncs"))
            return self._core.watch(now, watch, WatchState(published.revision, queue))

        self._membership.run(feed)


def _no_wait(timeout: float | None = None) -> None:
    """Nothing to wait for."""


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
