"""Runs a session's core (:class:`leaderelect.core.session.SessionCore`) in threads.

The core decides and never waits; this module carries its actions out and feeds it what
happens. Every input goes into the core under one lock, on whichever thread has it: a
call's answer on the lane that made the call, a timer on the driver's timer thread, a
request from user code on the user's thread. Each input reads the clock once, under the
lock, and the actions that come back are handed on at once without waiting: a call to its
lane, anything else to the owner's ``on_action``.

Calls run on lanes, so that no call waits behind one it must not: the lease lane (grant,
renewal, revoke: the core has one of them in flight at a time) and a lane per election
(join, confirm, delete, and the delete that withdraws its key). A lane is one thread that makes
its calls one at a time, in order, each with the deadline the core gave it. A renewal is
timed from when the core asked for it, which is never later than when the lane sent it:
the lease's local deadline stays on the safe side.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
from typing import Callable

from leaderelect import election
from leaderelect._etcd import EtcdClient
from leaderelect._threads import ours
from leaderelect.core.lease import LeaseEnd, renewal_budget
from leaderelect.core.messages import (
    Action,
    Answer,
    Call,
    Confirm,
    Delete,
    Failed,
    Failure,
    Grant,
    Granted,
    Join,
    Joined,
    KeepAlive,
    ReadQueue,
    Renewed,
    Request,
    Revoke,
)
from leaderelect.core.session import SessionCore
from leaderelect.exceptions import EtcdError, LeaseExpiredError

log = logging.getLogger(__name__)

#: the longest the timer thread sleeps without looking at the core's timers again
MAX_SLEEP = 5.0
#: inputs that produce more actions in a row than this are a bug (a core that never settles)
MAX_ROUNDS = 8

LEASE_LANE = "lease"


class Lane:
    """One thread that runs jobs one at a time, in order. It starts with the first job and
    ends after ``IDLE`` seconds without one (an election's lane is busy only while it
    campaigns: with 500 electors in a process, idle lanes would be 500 idle threads)."""

    IDLE = 30.0

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        """Run *job* in turn (raises if no thread can be started: the job is not taken)."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                thread = threading.Thread(target=ours(self._run), name=self.name, daemon=True)
                thread.start()
                self._thread = thread
            self._jobs.put(job)

    def close(self, timeout: float) -> None:
        """No new jobs; the one running finishes (every call has a deadline)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._jobs.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.IDLE)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():  # else a job came just now: take it
                        self._thread = None
                        return
                continue
            if job is None:
                return
            try:
                job()
            except Exception:  # a bug must not leave a dead lane with calls waiting
                log.exception("[%s] a call failed", self.name)


class Driver:
    """The threads of one :class:`SessionCore`: its timers, its lanes, its lock."""

    def __init__(
        self,
        core: SessionCore,
        client: EtcdClient,
        *,
        name: str,
        clock: Callable[[], float],
        on_action: Callable[[Action], None],
        after_input: Callable[[float], None],
        on_renewed: Callable[[float], None],
    ) -> None:
        self.core = core
        self._client = client
        self._name = name
        self._clock = clock
        self._on_action = on_action
        self._after_input = after_input
        self._on_renewed = on_renewed
        # Reentrant: an owner's hook that runs under it may feed the core again.
        self._lock = threading.RLock()
        self._timers_changed = threading.Condition(self._lock)
        self._lanes: dict[str, Lane] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        # inputs the owner asked for while actions were being carried out, fed right after
        self._later: list[Callable[[float], object]] = []
        # the owner's own timers: (at, order, step)
        self._timers: list[tuple[float, int, Callable[[float], object]]] = []
        self._order = itertools.count()
        self._carrying_out = 0
        # when the timer thread wakes next by itself (it is woken early only for an earlier timer)
        self._sleeps_until = float("-inf")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=ours(self._run), name=f"leaderelect-session-{self._name}", daemon=True
            )
            self._thread.start()
        self.run(self.core.start)

    def close(self, timeout: float) -> None:
        """Stop the timer thread and the lanes (a call in flight ends by its deadline)."""
        with self._lock:
            self._closed = True
            self._timers_changed.notify_all()
            thread, lanes = self._thread, list(self._lanes.values())
        for lane in lanes:
            lane.close(timeout)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- inputs ------------------------------------------------------------------------------

    def run(self, step: Callable[[float], object]) -> None:
        """Feed one input: ``step(now)`` calls the core; then carry out what it asked for
        (what *step* returns, if it returns the core's actions, and what the core has left).

        An error from *step* is raised to the caller (a bad request from user code) after
        the actions are carried out.
        """
        with self._lock:
            try:
                self._feed(step)
            finally:
                self._drain()

    def later(self, step: Callable[[float], object]) -> None:
        """Feed *step* once the actions being carried out now are (call it from
        ``on_action``), or at once when called outside the driver."""
        with self._lock:
            self._later.append(step)
            if not self._carrying_out:
                self._drain()

    def _drain(self) -> None:
        # Inputs asked for while actions were carried out, in order: never fed in the middle
        # of carrying out another input's actions.
        for _ in range(10_000):
            if not self._later or self._carrying_out:
                return
            self._background(self._later.pop(0), nested=True)

    def schedule(self, at: float, step: Callable[[float], object]) -> None:
        """Feed *step* at clock reading *at* (on the timer thread)."""
        with self._lock:
            heapq.heappush(self._timers, (at, next(self._order), step))
            self._wake_timers(at)

    def _feed(self, step: Callable[[float], object]) -> None:
        now = self._clock()
        self._carrying_out += 1
        try:
            actions = step(now)
            if isinstance(actions, list):
                for action in actions:
                    self._carry_out(action)
        finally:
            try:
                self._settle(now)
            finally:
                self._carrying_out -= 1

    def _background(self, step: Callable[[float], object], *, nested: bool = False) -> None:
        """Feed an input from one of our threads: a bug is logged, and the lease given up
        (its state in the core may be half changed), never a dead thread."""
        feed = self._feed if nested else self.run
        try:
            feed(step)
        except Exception:
            log.exception("[%s] the session's core failed; giving its lease up", self._name)
            try:
                feed(self._give_up)
            except Exception:
                log.exception("[%s] giving the lease up failed too", self._name)

    def _give_up(self, now: float) -> None:
        keeper = self.core.lease_keeper
        if keeper.lease is not None:
            keeper.lose(now, keeper.lease, LeaseEnd.ERROR)

    def _settle(self, now: float) -> None:
        for _ in range(MAX_ROUNDS):
            actions = self.core.tick(now)
            for action in actions:
                self._carry_out(action)
            self._after_input(now)
            if not self.core.ctx.out:
                break
        else:
            log.error("[%s] the core did not settle after %d rounds", self._name, MAX_ROUNDS)
        self._wake_timers(self.core.wake_at())

    def _wake_timers(self, at: float | None) -> None:
        # Only for a timer earlier than the thread's own wake-up: waking it on every input
        # (each view published to each of hundreds of electors) costs the GIL for nothing.
        if at is not None and at < self._sleeps_until:
            self._sleeps_until = float("-inf")
            self._timers_changed.notify_all()

    # -- actions -------------------------------------------------------------------------------

    def _carry_out(self, action: Action) -> None:
        try:
            if isinstance(action, Call) and not isinstance(action.request, ReadQueue):
                self._lane(action).submit(lambda: self._call(action))
            else:
                self._on_action(action)  # a ReadQueue is the owner's: it follows the queue
        except Exception as err:  # a bug (or no thread to be had): never a call left unanswered
            log.exception("[%s] carrying out %s failed", self._name, type(action).__name__)
            if isinstance(action, Call):
                failed = Failed(Failure.UNAVAILABLE, repr(err))
                self.later(lambda now: self.core.answer(now, action.call_id, failed))

    def _lane(self, call: Call) -> Lane:
        request = call.request
        if isinstance(request, (Grant, KeepAlive, Revoke)):
            name = LEASE_LANE
        elif isinstance(request, (Join, Confirm, Delete)):
            # An election's calls, withdrawals included, go out in the order the core asked
            # for them: a withdrawal on a lane of its own could overtake the join it undoes,
            # and the key would be created after its delete, on a lease that lives on.
            name = "election-" + request.key.rsplit("/", 1)[0]
        else:  # a ReadQueue is answered by the owner, never sent
            raise TypeError(f"no lane for {request!r}")
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane(f"leaderelect-{name}-{self._name}")
            if self._closed:
                lane.close(0)
        return lane

    def _call(self, call: Call) -> None:
        sent = self._clock()
        try:
            answer = self._execute(call.request, call.timeout)
        except Exception as err:  # a bug: say it; the core retries as after any failure
            log.exception("[%s] %s failed", self._name, type(call.request).__name__)
            answer = Failed(Failure.UNAVAILABLE, repr(err))
        round_trip = self._clock() - sent
        self._background(lambda now: self.core.answer(now, call.call_id, answer))
        if isinstance(answer, Renewed):
            # Only once the core has the renewal: a slow stats hook must not hold up the
            # deadline it extends (it passed, and a renewed term was demoted).
            self._on_renewed(round_trip)

    def _execute(self, request: Request, timeout: float) -> Answer:
        """Make one call to etcd; its answer, or what went wrong, as the core takes it."""
        client = self._client
        try:
            if isinstance(request, KeepAlive):
                keeper = self.core.lease_keeper
                lease = keeper.lease
                ttl = lease.ttl if lease is not None else self.core.config.ttl
                # Not cut short by the lease: running out of it moves to the next member.
                budget = timeout >= renewal_budget(self.core.config.call_timeout, ttl) - 1e-6
                return Renewed(client.lease_keepalive(request.lease_id, timeout=timeout, budget=budget))
            if isinstance(request, Grant):
                return Granted(*client.lease_grant(request.ttl, timeout=timeout))
            if isinstance(request, Revoke):
                client.lease_revoke(request.lease_id, timeout=timeout)
                return None
            if isinstance(request, Delete):
                key = request.key.encode()
                if request.token is None:
                    return client.delete(key, timeout=timeout).deleted > 0
                return election.resign(client, key, request.token, timeout=timeout)
            if isinstance(request, Join):
                name = request.key.rsplit("/", 1)[0]
                return Joined(election.campaign(client, name, request.lease_id, request.value, timeout=timeout))
            if isinstance(request, Confirm):
                return election.confirm(client, request.key.encode(), request.token, request.lease_id, timeout=timeout)
            raise TypeError(f"no way to send {request!r}")
        except LeaseExpiredError as err:
            return Failed(Failure.LEASE_NOT_FOUND, str(err))
        except EtcdError as err:
            # A failed renewal is worth a warning (the lease's deadline draws nearer); the
            # others are retried quietly.
            level = logging.WARNING if isinstance(request, KeepAlive) else logging.INFO
            log.log(level, "[%s] %s failed: %s", self._name, type(request).__name__, err)
            timed_out = err.code == "DEADLINE_EXCEEDED"
            return Failed(Failure.TIMEOUT if timed_out else Failure.UNAVAILABLE, str(err))

    # -- the timer thread --------------------------------------------------------------------

    def _run(self) -> None:
        with self._lock:
            while not self._closed:
                now = self._clock()
                if self._timers and self._timers[0][0] <= now:
                    _, _, step = heapq.heappop(self._timers)
                    self._background(step)
                    continue
                wake = self.core.wake_at()
                if wake is not None and wake <= now:
                    self._background(self.core.tick)
                    continue
                if self._timers:
                    wake = self._timers[0][0] if wake is None else min(wake, self._timers[0][0])
                sleep = MAX_SLEEP if wake is None else min(MAX_SLEEP, wake - now)
                self._sleeps_until = now + sleep
                self._timers_changed.wait(sleep)
                self._sleeps_until = float("-inf")
