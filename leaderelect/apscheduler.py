"""Run an APScheduler 3.x scheduler's jobs only while this process leads.

.. code-block:: python

    from apscheduler.schedulers.background import BackgroundScheduler
    from leaderelect import LeaderElector
    from leaderelect.apscheduler import current_term, leader_only

    scheduler = BackgroundScheduler()

    @scheduler.scheduled_job("cron", minute="*")
    def report():
        term = current_term()                  # the term this run belongs to
        redis_fence.execute(term, "SET", "report:last", now())

    elector = LeaderElector("reports", endpoints="etcd:2379", ttl=10)
    leader_only(scheduler, elector)            # before scheduler.start()
    scheduler.start()
    elector.start()

Every process runs the scheduler; only the leader's processes jobs. What it does:

* Until this process leads, the scheduler is paused (from the moment it starts).
* On election, each job's next run is moved to its next fire time from now, then the
  scheduler resumes: runs that came due before this term are skipped, never run late, so a
  run the previous leader made is not made again (APScheduler would otherwise run a missed
  run within its ``misfire_grace_time``).
* On demotion the scheduler is paused *before* ``on_demoted`` returns, and the runs still in
  progress are waited for (up to ``drain_timeout``). On ``stop()`` and ``resign()`` the
  successor starts only after that, so a graceful handoff does not overlap. (Runs are
  counted from APScheduler's events, which a round of submissions sends just after it;
  a run submitted in the same instant as the demotion may be missed by the count.)
* A term can also end without warning (a pause, a partition): a run in progress then
  outlives it. :func:`current_term` gives a run its term, for a fence
  (:mod:`leaderelect.fencing`) that refuses the late writes.

Needs the ``apscheduler`` extra (``pip install 'leaderelect[apscheduler]'``), APScheduler 3.x.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from leaderelect._forksafe import ForkSafeLock
from leaderelect.exceptions import ConfigurationError, NotLeaderError

if TYPE_CHECKING:
    from leaderelect.elector import LeaderElector
    from leaderelect.term import DemotionReason, Term

try:
    import apscheduler
    from apscheduler.events import (
        EVENT_JOB_ERROR,
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MISSED,
        EVENT_JOB_SUBMITTED,
        EVENT_SCHEDULER_START,
    )
    from apscheduler.schedulers.base import STATE_RUNNING, STATE_STOPPED, BaseScheduler
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("leaderelect.apscheduler needs APScheduler 3.x: pip install 'leaderelect[apscheduler]'") from err

__all__ = ["LeaderOnly", "current_term", "leader_only"]

log = logging.getLogger(__name__)

#: how long after a round of submissions its events may still be on their way
_SUBMISSION_GRACE = 0.05

_lock = ForkSafeLock()  # a parent thread may hold it at fork()
_terms: dict[int, Term] = {}  # id(scheduler) -> the term it runs jobs for


class LeaderOnly:
    """The link between one scheduler and one elector (see :func:`leader_only`)."""

    def __init__(self, scheduler: Any, elector: LeaderElector, drain_timeout: float | None) -> None:
        self.scheduler = scheduler
        self.elector = elector
        self.drain_timeout = max(0.0, elector.demote_timeout - 0.5) if drain_timeout is None else drain_timeout
        self._running: collections.Counter[tuple[str, datetime]] = collections.Counter()
        self._changed = threading.Condition()  # guards _running
        # Serialises start, election and demotion: a start seen just before an election
        # must not pause the scheduler after the election resumed it.
        self._turn = threading.Lock()
        self._leading = False
        scheduler.add_listener(self._on_started, EVENT_SCHEDULER_START)
        scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        scheduler.add_listener(self._on_finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        elector.on_elected(self._elected)
        elector.on_demoted(self._demoted)
        term = elector.term  # already leading: its on_elected will not be replayed
        if term is not None:
            self._elected(term)
        else:
            with self._turn:
                if scheduler.state == STATE_RUNNING and not self._leading:
                    scheduler.pause()

    # -- the scheduler's events (its threads) ----------------------------------------------

    def _on_started(self, event: Any) -> None:
        # Dispatched by start() before the scheduler's thread runs a job.
        with self._turn:
            if not self._leading:
                self.scheduler.pause()
            else:
                self._skip_overdue()  # a persistent job store may hold runs due before the term

    def _on_submitted(self, event: Any) -> None:
        with self._changed:
            for run_time in event.scheduled_run_times:
                key = (event.job_id, run_time)
                self._running[key] += 1
                if self._running[key] == 0:
                    del self._running[key]

    def _on_finished(self, event: Any) -> None:
        # May come before its submission event (which is sent after the whole round).
        with self._changed:
            key = (event.job_id, event.scheduled_run_time)
            self._running[key] -= 1
            if self._running[key] == 0:
                del self._running[key]
            self._changed.notify_all()

    def running(self) -> int:
        """Runs submitted and not finished yet."""
        with self._changed:
            return sum(n for n in self._running.values() if n > 0)

    # -- the elector's callbacks (its callbacks thread) -------------------------------------

    def _elected(self, term: Term) -> None:
        with _lock:
            _terms[id(self.scheduler)] = term
        with self._turn:
            self._leading = True
            if self.scheduler.state == STATE_STOPPED:
                return  # start() will see that this process leads
            self._skip_overdue()
            self.scheduler.resume()
        log.info("[%s] scheduler resumed for term %d", self.elector.name, term.token)

    def _skip_overdue(self) -> None:
        """Move every run that came due before this term to its next fire time from now (a
        one-off run is dropped): the previous leader may have made it."""
        now = datetime.now(self.scheduler.timezone)
        for job in self.scheduler.get_jobs():
            if job.next_run_time is not None and job.next_run_time < now:
                # None as the previous fire time: the next one counted from now (given the
                # old one, a cron trigger would name the slot right after it, still past)
                following = job.trigger.get_next_fire_time(None, now)
                if following is None or following < now:  # a one-off (date) run that is past
                    self.scheduler.remove_job(job.id)
                else:
                    self.scheduler.modify_job(job.id, next_run_time=following)

    def _demoted(self, term: Term, reason: DemotionReason) -> None:
        with self._turn:
            self._leading = False
            if self.scheduler.state != STATE_STOPPED:
                self.scheduler.pause()
        with _lock:
            if _terms.get(id(self.scheduler)) is term:
                del _terms[id(self.scheduler)]
        # A round of submissions in progress ends under the job store lock (get_jobs waits
        # for it); its submission events follow on the scheduler's thread a moment later.
        self.scheduler.get_jobs()
        time.sleep(_SUBMISSION_GRACE)
        with self._changed:
            drained = self._changed.wait_for(
                lambda: all(n <= 0 for n in self._running.values()), timeout=self.drain_timeout
            )
            self._running = collections.Counter({k: n for k, n in self._running.items() if n != 0})
        if not drained:
            log.warning(
                "[%s] %d job runs still going %.1f s after the term ended (%s); they should check their term",
                self.elector.name,
                self.running(),
                self.drain_timeout,
                reason,
            )
        log.info("[%s] scheduler paused: term %d ended (%s)", self.elector.name, term.token, reason)


def leader_only(scheduler: Any, elector: LeaderElector, *, drain_timeout: float | None = None) -> LeaderOnly:
    """Run *scheduler*'s jobs only while *elector* leads. Call it before ``scheduler.start()``
    (or at any time: a running scheduler is paused at once unless the elector leads).

    :param drain_timeout: seconds ``on_demoted`` waits for runs in progress (default: the
        elector's ``demote_timeout`` minus 0.5 s, so a graceful handoff waits for them).
    :raises ConfigurationError: if *scheduler* is not an APScheduler 3.x scheduler.
    """
    if not isinstance(scheduler, BaseScheduler):
        version = getattr(apscheduler, "__version__", "?")
        raise ConfigurationError(
            f"leader_only() needs an APScheduler 3.x scheduler (installed: {version}), not {type(scheduler).__name__}"
        )
    return LeaderOnly(scheduler, elector, drain_timeout)


def current_term(scheduler: Any = None) -> Term:
    """This process's current term: call it at the start of a job and keep it for the run's
    fenced writes. (It is the term current at the call: a run that outlives its term and
    calls it again after a re-election gets the new term.) With several leader-only
    schedulers in one process, name the *scheduler*.

    :raises NotLeaderError: when this process does not lead (the run started late, or after
        its term ended).
    """
    with _lock:
        if scheduler is not None:
            term = _terms.get(id(scheduler))
        elif len(_terms) > 1:
            raise ConfigurationError("several leader-only schedulers in this process: current_term(scheduler)")
        else:
            term = next(iter(_terms.values()), None)
    if term is None or term.valid_for() <= 0:
        raise NotLeaderError("this process does not lead: the job should not run now")
    return term
