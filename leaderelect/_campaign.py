"""The campaign thread: the one owner of an elector's election state.

It blocks on one queue (its inbox), fed by the session (lease granted / lost), the
observer (a new view of the queue), ``stop()`` and ``resign()``; while leading it waits
with a timeout equal to the time left before the lease's local deadline, so demotion
happens from its own timer, at the deadline, whatever else is going on.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Callable, NamedTuple, Union

from leaderelect import election
from leaderelect._retry import retrying
from leaderelect.core.base import call_deadline, min_lease
from leaderelect.core.elector import why_ended
from leaderelect.core.lease import LeaseEnd
from leaderelect.core.queue import Position, View
from leaderelect.exceptions import EtcdError, LeaseExpiredError
from leaderelect.session import Lease, Membership
from leaderelect.term import DemotionReason, Term

log = logging.getLogger(__name__)


class Stop(NamedTuple):
    """stop() was called (the stop event is set too)."""


class ViewChanged(NamedTuple):
    """The observer published a view that may concern our key."""


class LeaseChanged(NamedTuple):
    """The session granted or lost a lease (``session.LEASE_GRANTED`` / ``LEASE_LOST``)."""

    kind: str
    lease: Lease


class Resign(NamedTuple):
    """resign(): step down, cool down; *result* gets True if this process led, then *done* is set."""

    cooldown: float
    done: threading.Event
    result: list[bool]


#: what the campaign thread's inbox carries
Message = Union[Stop, ViewChanged, LeaseChanged, Resign]


class _Turn(enum.Enum):
    LEAD = "lead"
    LOST = "lease lost"
    GONE = "key gone"
    STOP = "stop"


@dataclass(frozen=True)
class Host:
    """What the campaign thread needs of its elector: this interface, nothing else.

    The elector owns the term, the callbacks and the observer; the campaign decides. Every
    hook but ``position`` is called on the campaign thread.
    """

    name: str
    #: what to proclaim (proclaim() changes it: read it each time)
    value: Callable[[], bytes]
    #: the elector's part in its session (abandon a lease, withdraw a key; ``.session``)
    membership: Membership
    #: whether the elector made the session for itself (then its lease ends with us)
    owns_session: bool
    clock: Callable[[], float]
    #: stop(), resign() and the observer and session post here
    inbox: queue.Queue[Message]
    #: set by stop(); the campaign ends
    stop_event: threading.Event
    #: why a leader's term ends on stop (None: stopped)
    stop_reason: Callable[[], DemotionReason | None]
    #: seconds stop()/resign() wait for on_demoted before handing over
    demote_timeout: Callable[[], float]
    #: our key's place in the latest view (also called on the observer thread)
    position: Callable[[str, int], Position]
    #: whether a term is current
    has_term: Callable[[], bool]
    #: a term begins (the elector delivers on_elected)
    begin_term: Callable[[Term], None]
    #: the term ends; the event is set once on_demoted returned (None: no term was current)
    end_term: Callable[[DemotionReason], threading.Event | None]
    #: the campaign thread is about to end
    finish: Callable[[], None]


class Campaign:
    def __init__(self, host: Host) -> None:
        self._host = host
        self._name = host.name
        self._session = host.membership.session
        self._client = self._session.client
        self._membership = host.membership
        self._clock = host.clock
        self._cooldown_until = 0.0
        self._token: int | None = None  # our key's create revision on the latest lease, once known
        self._min_lease = min_lease(self._session.ttl, self._session.guard)  # see core.base.min_lease
        # (key, token, leading) of our current key, for cares(): set before each check
        self._interest: tuple[str, int, bool] | None = None
        self._thread = threading.Thread(target=self._run, name=f"leaderelect-campaign-{self._name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        if self._thread.ident is None:  # never started (a failed start())
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_current_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def cares(self, view: View) -> bool:
        """Whether a new view concerns our key (called on the observer thread).

        Waiting, only our key's loss or the end of the queue ahead of us matter; leading,
        only our key's loss. Other changes (and progress answers) must not wake this thread:
        with hundreds of candidates in one process that wake-up storm costs the handoff.
        """
        interest = self._interest
        if interest is None:
            return True
        key, token, leading = interest
        pos = self._host.position(key, token)
        return pos.gone or (not leading and pos.first)

    def _stopping(self) -> bool:
        return self._host.stop_event.is_set()

    def _timeout(self, lease: Lease) -> float:
        """A call's deadline: never past the lease's local deadline."""
        return call_deadline(self._session.call_timeout, lease.remaining())

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        last: Lease | None = None
        try:
            while not self._stopping():
                lease = self._session.lease
                wait = self._cooldown_until - self._clock()
                if lease is None or wait > 0:
                    self._next(wait if wait > 0 else None)
                    continue
                last = lease
                # Unknown until this join answers: if its answer is lost and we stop, the key
                # is withdrawn whatever its revision (a stale revision would miss it).
                self._token = None
                if not self._host.owns_session:
                    # A stopped elector of this name on this session may have left its key to
                    # be withdrawn. This join may adopt that key, so that delete must not land
                    # later: drop it now (after one in flight), not before. Stopped before
                    # joining, we withdraw nothing, and the predecessor's delete must go on.
                    self._membership.may_join(self._name)
                try:
                    token = self._join(lease)
                    if token is None:
                        continue
                    self._token = token
                    turn = self._wait_turn(lease, token)
                    if turn is _Turn.LEAD:
                        self._lead(lease, token)
                except Exception:  # a bug must not leave a dead thread or a live term: say it, go on
                    log.exception("[%s] campaign failed; campaigning anew in 1 s", self._name)
                    self._host.end_term(DemotionReason.LEASE_LOST)
                    self._membership.abandon(lease, LeaseEnd.ERROR)
                    self._host.stop_event.wait(1.0)
        finally:
            if last is not None and not self._host.owns_session:
                self._withdraw(last, self._token)
            self._host.finish()

    def _next(self, timeout: float | None) -> Message | None:
        """Take one message (None on timeout); answer a resign that finds no term."""
        try:
            msg = self._host.inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(msg, Resign) and not self._host.has_term():
            msg.result.append(False)
            msg.done.set()
        return msg

    def _join(self, lease: Lease) -> int | None:
        """Put our key in the queue; returns its create revision, None if that failed for good."""
        try:
            for attempt in retrying(self._host.stop_event, f"[{self._name}] campaign"):
                with attempt:
                    if not lease.alive():
                        return None
                    return election.campaign(
                        self._client, self._name, lease.id, self._host.value(), timeout=self._timeout(lease)
                    )
        except LeaseExpiredError:
            self._membership.abandon(lease, LeaseEnd.UNKNOWN_TO_ETCD)
        except EtcdError:
            pass  # stopped while etcd was unreachable
        return None

    def _wait_turn(self, lease: Lease, token: int) -> _Turn:
        """Wait until no key is ahead of ours, then confirm our key and lease on the server."""
        key = election.candidate_key(self._name, lease.id)
        self._interest = (key.decode(), token, False)  # set before the first check: no lost wake-up
        retry_in: float | None = None
        while True:
            if self._stopping():
                return _Turn.STOP
            if not lease.alive():
                return _Turn.LOST
            pos = self._host.position(key.decode(), token)
            # The view must include our own key's creation before it can say anything.
            if pos.settled:
                if pos.gone:
                    return _Turn.GONE
                if pos.first and lease.remaining() < self._min_lease:
                    # Too little lease left to begin a term: its renewals are failing right
                    # now, and a term taken with 173 ms left ended 180 ms later (elected,
                    # then demoted, and a gap all the same). Lead once a renewal succeeds,
                    # with a whole renewal interval ahead; until then the queue waits on us,
                    # as it would for a leader about to lose its lease anyway.
                    retry_in = 0.05
                elif pos.first:
                    try:
                        if election.confirm(self._client, key, token, lease.id, timeout=self._timeout(lease)):
                            if lease.alive():
                                return _Turn.LEAD
                        else:
                            return _Turn.GONE
                    except EtcdError as err:
                        log.info("[%s] confirming leadership failed: %s; retrying", self._name, err)
                        retry_in = 0.2
            self._next(retry_in)
            retry_in = None

    def _lead(self, lease: Lease, token: int) -> None:
        key = election.candidate_key(self._name, lease.id)
        term = Term(
            self._name,
            key.decode(),
            token,
            lease.id,
            self._host.value().decode("utf-8", "replace"),
            self._clock(),
            lease,
        )
        self._interest = (key.decode(), token, True)
        self._host.begin_term(term)
        while True:
            if self._stopping():
                self._step_down(lease, token, self._host.stop_reason() or DemotionReason.STOPPED)
                return
            remaining = lease.remaining()
            if lease.lost_reason is not None or remaining <= 0:
                reason = _why_ended(lease, DemotionReason.LEASE_LOST)
                break
            # The session reports the lease lost at its deadline (its thread wakes there); this
            # wait is the backstop. Waking at each moved deadline cost one wake-up per renewal
            # per election: 100 elections on one session idled at ~1 % of a core for that alone.
            msg = self._next(remaining + self._session.ttl)
            if msg is None:
                continue
            if isinstance(msg, ViewChanged):
                if self._host.position(key.decode(), token).gone:
                    reason = _why_ended(lease, DemotionReason.KEY_DELETED)
                    break
            elif isinstance(msg, Resign):
                self._step_down(lease, token, DemotionReason.RESIGNED)
                self._cooldown_until = self._clock() + msg.cooldown
                msg.result.append(True)
                msg.done.set()
                return
        # An involuntary end: this lease's term is over for good; a new lease follows.
        self._host.end_term(reason)
        self._membership.abandon(lease, LeaseEnd.TERM_ENDED)

    def _step_down(self, lease: Lease, token: int, reason: DemotionReason) -> None:
        """Demote, let on_demoted finish (bounded), then delete the key for the successor."""
        done = self._host.end_term(reason)
        if done is not None and not done.wait(self._host.demote_timeout()):
            log.warning(
                "[%s] on_demoted still running after %.1f s; handing over anyway",
                self._name,
                self._host.demote_timeout(),
            )
        key = election.candidate_key(self._name, lease.id)
        for _ in range(2):
            try:
                election.resign(self._client, key, token, timeout=self._timeout(lease))
                return
            except EtcdError as err:
                log.warning("[%s] deleting the leader key failed: %s", self._name, err)
        # The key may survive: never adopt it again (that would resume the term).
        self._membership.abandon(lease, LeaseEnd.KEY_NOT_DELETED)

    def _withdraw(self, lease: Lease, token: int | None) -> None:
        """Remove our key from a shared session's election on stop: the session tries now
        and, if etcd cannot be reached, again until the key is gone or the lease ends."""
        if lease.alive():  # else the key goes with the lease
            self._membership.withdraw(self._name, election.candidate_key(self._name, lease.id), token, lease)


def _why_ended(lease: Lease, otherwise: DemotionReason) -> DemotionReason:
    """Why a term ended without stop() or resign() (the rule is the core's: ``why_ended``)."""
    return why_ended(lease.remaining(), lease.lost_reason, otherwise)
