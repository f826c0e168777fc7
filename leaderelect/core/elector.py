"""One candidate's decisions: campaign, wait for our turn, confirm, lead, step down, stop.

``ElectionCore`` owns a lease (:mod:`.lease`) and a view of the queue (:mod:`.follow`) and
does no I/O: every method takes ``now`` and returns the actions to carry out (send a
request, open a watch, deliver a callback, ...). The driver (threads, or the simulator)
carries them out and feeds back what happens.

The phases, in order::

    NEW -> IDLE -> JOINING -> WAITING -> CONFIRMING -> LEADING -> STEPPING_DOWN -> IDLE ...
    any -> STOPPING -> DONE (stop; a leader steps down first; STOPPING revokes the lease)

A candidate leads only when (1) the view, as of a revision at or after its key's creation,
shows nobody ahead of it; (2) its lease has at least ``min_lease`` left; (3) a read of its
key shows it still exists with its create revision on its lease. A term ends at the lease's
local deadline, on loss of the lease or the key, on stop() and on resign(); an
involuntarily ended term gives its lease up, so the next term has a new key and a higher
token.
"""

from __future__ import annotations

import enum
import random

from leaderelect.core.base import Config, Mutations, call_deadline, min_lease, retry_wait
from leaderelect.core.follow import Follower
from leaderelect.core.lease import LeaseEnd, LeaseState
from leaderelect.core.messages import (
    Action,
    Answer,
    Callback,
    Confirm,
    Delete,
    Deliver,
    Demoted,
    DemotionReason,
    Elected,
    Failed,
    Failure,
    Finished,
    Join,
    Joined,
    LeaderChanged,
    Publish,
    ResignDone,
    TermInfo,
    WatchMessage,
)
from leaderelect.core.queue import View, key_of
from leaderelect.core.session import SessionCore


class Phase(enum.Enum):
    NEW = "new"
    IDLE = "idle"  # no lease yet, or cooling down after resign()
    JOINING = "joining"
    WAITING = "waiting"
    CONFIRMING = "confirming"
    LEADING = "leading"
    STEPPING_DOWN = "stepping down"
    STOPPING = "stopping"
    DONE = "done"


#: seconds between checks while a candidate first in line has too little lease left
RECHECK_LOW_LEASE = 0.05
#: seconds before a failed confirmation is retried (a view change retries sooner)
RECHECK_CONFIRM = 0.2
#: delete attempts of the leader key on stop()/resign() before the lease is given up
RESIGN_ATTEMPTS = 2


def why_ended(lease_left: float, lost: LeaseEnd | None, otherwise: DemotionReason) -> DemotionReason:
    """Why a term ended without stop() or resign(): our deadline first, then the lease, else
    *otherwise*. After a pause the key's deletion (its lease expired on the server) can
    arrive before our deadline's timer does; the cause is still the deadline."""
    if lease_left <= 0 or lost is LeaseEnd.DEADLINE:
        return DemotionReason.DEADLINE_PASSED
    if lost is not None:
        return DemotionReason.LEASE_LOST
    return otherwise


class ElectionCore:
    """One candidate of election *settings.name*, on a session of its own or on a shared
    one (``session=``; see :mod:`.session`)."""

    def __init__(
        self,
        settings: Config,
        rng: random.Random,
        mutations: Mutations | None = None,
        *,
        session: SessionCore | None = None,
    ) -> None:
        #: the lease this election campaigns on: shared with other elections, or its own
        self.session = session or SessionCore(settings, rng, mutations, shared=False)
        self._ctx = ctx = self.session.context_for(settings)
        self.settings = settings = ctx.settings  # on a shared session, with its lease settings
        self.lease_keeper = self.session.lease_keeper
        self.follower = Follower(ctx, settings.name + "/", self._view)
        self.phase = Phase.NEW
        self.term: TermInfo | None = None
        self.min_lease = min_lease(settings.ttl, settings.guard)
        self._lease: LeaseState | None = None  # the lease of the current campaign
        self._token: int | None = None
        self._epoch = 0  # bumped on every phase change: late answers and timers of an earlier phase do nothing
        self._attempt = 0
        self._cooldown_until = 0.0
        self._stopping: DemotionReason | None = None
        self._resign_requests: list[tuple[int, float]] = []  # (request, cooldown) being served
        self._next_request = 0
        self._waiting_for: int | None = None  # the Deliver seq whose callbacks a step-down waits for
        self._resign_attempt = 0
        self._shown: tuple[str, int, bytes] | None = None
        #: how often each phase change happened (for coverage)
        self.transitions: dict[tuple[Phase, Phase], int] = {}
        #: terms won, and demotions by reason
        self.elections = 0
        self.demotions: dict[DemotionReason, int] = {}
        self.session.attach(self)

    @property
    def name(self) -> str:
        return self.settings.name

    def set_value(self, value: bytes) -> None:
        """What the candidate shows from its next join on (``proclaim()`` changed it)."""
        self.settings = self.settings._replace(value=value)
        self._ctx.settings = self.settings

    # -- inputs ------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        if self.phase is Phase.NEW:
            self._enter(Phase.IDLE)
            self.session.start(now)
            self.follower.start(now)
            self._step(now)  # a shared session may hold a lease already
        return self._ctx.take()

    def stop(self, now: float, reason: DemotionReason = DemotionReason.STOPPED) -> list[Action]:
        """Stop: a leader steps down first (``on_demoted`` gets *reason*); then the lease is
        revoked and ``Finished`` follows."""
        self._ctx.run_timers(now)
        self.stop_for(now, reason)
        return self._ctx.take()

    def stop_for(self, now: float, reason: DemotionReason) -> None:
        """Begin stopping (the session calls it when it closes; ``stop()`` takes the actions)."""
        if self._stopping is None:
            self._stopping = reason
            if self.phase is Phase.NEW:
                self._enter(Phase.DONE)
                self.session.detach(self)
                self._ctx.out.append(Finished(self._ctx.origin))
            elif self.phase is Phase.LEADING:
                self._step_down(now, reason)
            elif self.phase is not Phase.STEPPING_DOWN:
                self._finish(now)

    def resign(self, now: float, cooldown: float = 0.0) -> tuple[int, list[Action]]:
        """Step down (if leading) and campaign again after *cooldown* seconds; returns the
        request number its :class:`ResignDone` carries, and the actions."""
        self._ctx.run_timers(now)
        self._next_request += 1
        request = self._next_request
        if self.phase is Phase.LEADING and self._stopping is None:
            self._resign_requests.append((request, cooldown))
            self._step_down(now, DemotionReason.RESIGNED)
        elif self.phase is Phase.STEPPING_DOWN and self._resign_requests:
            self._resign_requests.append((request, cooldown))  # answered with the step-down in progress
        else:
            self._ctx.out.append(ResignDone(request, False, self._ctx.origin))
        return request, self._ctx.take()

    # The session's inputs, for a driver with one election on the lease (on a shared session
    # the driver may call the session's own; actions of every election come out either way).

    def answer(self, now: float, call_id: int, answer: Answer) -> list[Action]:
        return self.session.answer(now, call_id, answer)

    def watch(self, now: float, watch_id: int, message: WatchMessage) -> list[Action]:
        return self.session.watch(now, watch_id, message)

    def callback_done(self, now: float, seq: int) -> list[Action]:
        return self.session.callback_done(now, seq)

    def tick(self, now: float) -> list[Action]:
        return self.session.tick(now)

    # -- from the session (session.Member) --------------------------------------------------------

    def watch_message(self, now: float, watch_id: int, message: WatchMessage) -> None:
        self.follower.watch(now, watch_id, message)

    def delivered(self, now: float, seq: int) -> None:
        """The user's callbacks of Deliver *seq* returned."""
        if seq == self._waiting_for and self.phase is Phase.STEPPING_DOWN:
            self._waiting_for = None
            self._ctx.cancel_timer("campaign.demote")
            self._delete_key(now)

    def settle(self, now: float) -> None:
        """After each input: a stop waiting for the lease's revoke may be finished."""
        if self.phase is Phase.STOPPING:
            self._check_finished(now)

    def withdrawal_done(self, now: float) -> None:
        """A predecessor's key delete finished: joining is safe now."""
        self._step(now)

    # -- queries -----------------------------------------------------------------------------

    def wake_at(self) -> float | None:
        return self.session.wake_at()

    def is_leader(self, now: float) -> bool:
        """Leading, with the lease's local deadline still ahead: computed from *now*."""
        lease = self._lease
        return self.phase is Phase.LEADING and lease is not None and lease.alive(now)

    @property
    def lease(self) -> LeaseState | None:
        """The lease of the current campaign (and term, while leading)."""
        return self._lease

    @property
    def view(self) -> View:
        return self.follower.view

    @property
    def finished(self) -> bool:
        return self.phase is Phase.DONE

    # -- campaign ------------------------------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        move = (self.phase, phase)
        self.transitions[move] = self.transitions.get(move, 0) + 1
        self.phase = phase
        self._epoch += 1
        self._ctx.cancel_timer("campaign.join")
        self._ctx.cancel_timer("campaign.turn")

    def _step(self, now: float) -> None:
        """Take the next step from IDLE: join the queue once there is a lease and no cooldown."""
        if self.phase is not Phase.IDLE:
            return
        if self._stopping is not None:
            self._finish(now)
            return
        lease = self.lease_keeper.alive_lease(now)
        if lease is None:
            return  # _lease_granted steps again
        if now < self._cooldown_until:
            self._ctx.set_timer("campaign.cooldown", self._cooldown_until, self._step)
            return
        if not self.session.may_join(self.name):
            return  # a predecessor's delete of the key is in flight; withdrawal_done steps again
        self._enter(Phase.JOINING)
        self._lease = lease
        # Unknown until this join answers: if its answer is lost and we stop, the key is
        # withdrawn whatever its revision (a stale revision would miss it).
        self._token = None
        self._attempt = 0
        self._join(now)

    def _timeout(self, now: float, lease: LeaseState) -> float:
        """A call's deadline: never past the lease's local deadline."""
        return call_deadline(self.settings.call_timeout, lease.remaining(now))

    def _key(self, lease: LeaseState) -> str:
        return key_of(self.follower.prefix, lease.id)

    def _join(self, now: float) -> None:
        lease = self._lease
        assert lease is not None
        if self.phase is not Phase.JOINING:
            return
        if not lease.alive(now):
            self._idle(now)
            return
        epoch = self._epoch
        self._ctx.call(
            Join(self._key(lease), lease.id, self.settings.value),
            self._timeout(now, lease),
            lambda t, a: self._joined(t, a, epoch),
        )

    def _joined(self, now: float, answer: Answer, epoch: int) -> None:
        lease = self._lease_of(epoch)
        if lease is None:
            return
        if isinstance(answer, Joined):
            self._token = answer.token
            self._enter(Phase.WAITING)
            self._check_turn(now)
        elif isinstance(answer, Failed) and answer.failure is Failure.LEASE_NOT_FOUND:
            self.lease_keeper.lose(now, lease, LeaseEnd.UNKNOWN_TO_ETCD)
        else:
            self._attempt += 1
            self._ctx.set_timer("campaign.join", now + retry_wait(self._ctx.rng, self._attempt), self._join)

    def _lease_of(self, epoch: int) -> LeaseState | None:
        """The campaign's lease, if *epoch* is still the current phase (else an answer came
        too late: a later phase must not act on it)."""
        return self._lease if epoch == self._epoch else None

    def _idle(self, now: float) -> None:
        self._enter(Phase.IDLE)
        self._step(now)

    def _check_turn(self, now: float) -> None:
        """Waiting: lead once nobody is ahead (and the key and lease are confirmed)."""
        if self.phase is not Phase.WAITING:
            return
        lease, token = self._lease, self._token
        assert lease is not None and token is not None
        if not lease.alive(now):
            self._idle(now)  # a new lease follows
            return
        key = self._key(lease)
        pos = self.follower.position(key, token)
        # The view must include our own key's creation before it can say anything.
        if not pos.settled:
            return
        if pos.gone:
            self._idle(now)  # our key is gone: join again
        elif not pos.first:
            return
        elif lease.remaining(now) < self.min_lease:
            # Too little lease left to begin a term: its renewals are failing right now, and
            # a term taken with 173 ms left ended 180 ms later. Lead once a renewal succeeds.
            self._ctx.set_timer("campaign.turn", now + RECHECK_LOW_LEASE, self._check_turn)
        elif self._ctx.mutations.skip_confirm:
            self._lead(now)
        else:
            self._enter(Phase.CONFIRMING)
            epoch = self._epoch
            self._ctx.call(
                Confirm(key, token, lease.id), self._timeout(now, lease), lambda t, a: self._confirmed(t, a, epoch)
            )

    def _confirmed(self, now: float, answer: Answer, epoch: int) -> None:
        lease = self._lease_of(epoch)
        if lease is None:
            return
        if answer is True and lease.alive(now):
            token = self._token
            assert token is not None
            if self.follower.position(self._key(lease), token).gone:
                # Deleted while the answer was on its way (the view comes over a connection of
                # its own, and can be the faster): do not begin a term that is already over.
                self._idle(now)
            else:
                self._lead(now)
        elif answer is False:
            self._idle(now)  # the key is gone (or is another's): join again
        else:
            self._enter(Phase.WAITING)
            self._ctx.set_timer("campaign.turn", now + RECHECK_CONFIRM, self._check_turn)

    # -- leading -------------------------------------------------------------------------------

    def _lead(self, now: float) -> None:
        lease, token = self._lease, self._token
        assert lease is not None and token is not None
        self._enter(Phase.LEADING)
        self.term = TermInfo(self.settings.name, self._key(lease), token, lease.id, self.settings.value, now)
        self.elections += 1
        self._deliver(Elected(self.term))

    def _end_term(self, reason: DemotionReason) -> int | None:
        term, self.term = self.term, None
        if term is None:
            return None
        self.demotions[reason] = self.demotions.get(reason, 0) + 1
        return self._deliver(Demoted(term, reason))

    def _why_ended(self, now: float, lease: LeaseState, otherwise: DemotionReason) -> DemotionReason:
        return why_ended(lease.remaining(now), lease.lost, otherwise)

    def _involuntary_end(self, now: float, reason: DemotionReason) -> None:
        """A term ended without stop() or resign(): this lease's term is over for good."""
        lease = self._lease
        assert lease is not None
        self._end_term(reason)
        self._enter(Phase.IDLE)
        self.lease_keeper.lose(now, lease, LeaseEnd.TERM_ENDED)  # no-op if already lost
        self._step(now)

    def _step_down(self, now: float, reason: DemotionReason) -> None:
        """Demote, let on_demoted finish (bounded), then delete the key for the successor."""
        self._enter(Phase.STEPPING_DOWN)
        self._waiting_for = self._end_term(reason)
        self._resign_attempt = 0
        if self._waiting_for is None or self.settings.demote_timeout <= 0:
            self._waiting_for = None
            self._delete_key(now)
        else:
            self._ctx.set_timer("campaign.demote", now + self.settings.demote_timeout, self._demote_timed_out)

    def _demote_timed_out(self, now: float) -> None:
        if self.phase is Phase.STEPPING_DOWN and self._waiting_for is not None:
            self._waiting_for = None  # on_demoted still running: hand over anyway
            self._delete_key(now)

    def _delete_key(self, now: float) -> None:
        lease, token = self._lease, self._token
        assert lease is not None and token is not None
        self._resign_attempt += 1
        epoch = self._epoch
        self._ctx.call(
            Delete(self._key(lease), token), self._timeout(now, lease), lambda t, a: self._deleted(t, a, epoch)
        )

    def _deleted(self, now: float, answer: Answer, epoch: int) -> None:
        lease = self._lease_of(epoch)
        if lease is None:
            return
        if isinstance(answer, Failed):
            if self._resign_attempt < RESIGN_ATTEMPTS:
                self._delete_key(now)
                return
            # The key may survive: never adopt it again (that would resume the term).
            self.lease_keeper.lose(now, lease, LeaseEnd.KEY_NOT_DELETED)
        for request, cooldown in self._resign_requests:
            self._cooldown_until = max(self._cooldown_until, now + cooldown)
            self._ctx.out.append(ResignDone(request, True, self._ctx.origin))
        self._resign_requests = []
        self._idle(now)  # or, when stopping, finish

    # -- stop ------------------------------------------------------------------------------------

    def _finish(self, now: float) -> None:
        self._enter(Phase.STOPPING)
        for name in ("campaign.join", "campaign.turn", "campaign.cooldown", "campaign.demote"):
            self._ctx.cancel_timer(name)
        for request, _ in self._resign_requests:
            self._ctx.out.append(ResignDone(request, True, self._ctx.origin))
        self._resign_requests = []
        self.follower.stop(now)
        if self.session.shared:
            # The lease lives on for the other elections: our key must go by a delete, for
            # sure (a join in flight is ahead of it on the same connection).
            lease = self._lease
            if lease is not None and lease.alive(now):
                # finished once the first try is over, as the threaded stop() returns
                self.session.withdraw(now, self.name, self._key(lease), self._token, lease, self._withdrawn)
            else:
                self._withdrawn(now)
            return
        self.lease_keeper.close(now)
        self._check_finished(now)

    def _withdrawn(self, now: float) -> None:
        if self.phase is Phase.STOPPING:
            self._enter(Phase.DONE)
            self.session.detach(self)
            self._ctx.out.append(Finished(self._ctx.origin))

    def _check_finished(self, now: float) -> None:
        """Own session: finished once the lease's revokes are done (a shared one: _withdrawn)."""
        if self.phase is Phase.STOPPING and not self.session.shared and self.lease_keeper.closed:
            self._enter(Phase.DONE)
            self.session.detach(self)
            self._ctx.out.append(Finished(self._ctx.origin))

    # -- from the lease and the view ------------------------------------------------------------

    def lease_granted(self, now: float, lease: LeaseState) -> None:
        self._step(now)

    def lease_lost(self, now: float, lease: LeaseState) -> None:
        if lease is not self._lease:
            return
        if self.phase is Phase.LEADING:
            self._involuntary_end(now, self._why_ended(now, lease, DemotionReason.LEASE_LOST))
        elif self.phase in (Phase.JOINING, Phase.WAITING, Phase.CONFIRMING):
            self._idle(now)
        elif self.phase is Phase.STOPPING:
            self._check_finished(now)

    def _view(self, now: float, view: View) -> None:
        leader = view.leader if view.known else None
        shown = (leader.key, leader.token, leader.raw_value) if leader is not None else None
        self._ctx.out.append(Publish(view, self._ctx.origin))
        if shown != self._shown:
            self._shown = shown
            self._deliver(LeaderChanged(leader))
        if self.phase is Phase.WAITING:
            self._check_turn(now)
        elif self.phase is Phase.LEADING:
            lease, token = self._lease, self._token
            assert lease is not None and token is not None
            if self.follower.position(self._key(lease), token).gone:
                self._involuntary_end(now, self._why_ended(now, lease, DemotionReason.KEY_DELETED))

    def _deliver(self, callback: Callback) -> int:
        seq = self._ctx.new_seq()
        self._ctx.out.append(Deliver(seq, callback, self._ctx.origin))
        return seq
