"""What the core's parts share: settings, timers, outstanding calls, the output list.

The core reads no clock: every input carries ``now`` (the driver's clock,
:func:`leaderelect.clock` in production, a simulated one in ``leaderelect.sim``), and the
core asks to be woken with :meth:`Context.wake_at`.
"""

from __future__ import annotations

import random
import types
from typing import Any, Callable, NamedTuple

from leaderelect.core.messages import Action, Answer, Call, Request

Handler = Callable[[float, Any], None]
TimerHandler = Callable[[float], None]


class Config(NamedTuple):
    """One candidate's settings, already checked (``leaderelect._config`` checks user input)."""

    name: str
    value: bytes
    ttl: int
    #: seconds before the earliest server-side expiry at which a leader demotes itself
    guard: float
    call_timeout: float
    demote_timeout: float


class Mutations(NamedTuple):
    """Deliberate defects, for the simulator's negative controls only: each must make the
    checker FAIL. Never set in production."""

    #: lead as soon as the view says nobody is ahead, without reading the key and lease back
    skip_confirm: bool = False
    #: after a lost deadline keep the lease and renew it again: the term resumes
    resume_kept_lease: bool = False
    #: on a shared session, try a stopped election's key delete once (the old defect)
    withdraw_once: bool = False


class _Shared:
    """What the scopes of one context share: one output list, one timer table, one set of
    calls and ids (so a driver needs no routing: every id is unique in the session)."""

    __slots__ = ("calls", "next_id", "next_seq", "out", "timers")

    def __init__(self) -> None:
        self.out: list[Action] = []
        self.timers: dict[tuple[str, str], tuple[float, TimerHandler]] = {}
        self.calls: dict[int, Handler] = {}
        self.next_id = 0
        self.next_seq = 0


class Context:
    """The state every part of one core shares.

    A session's elections each get a :meth:`scope` of the session's context: their own
    settings, their timers under their own names, their actions tagged with their origin,
    and the session's one output list, timer table and ids.
    """

    def __init__(
        self,
        settings: Config,
        rng: random.Random,
        mutations: Mutations | None = None,
        *,
        origin: str = "",
        shared: _Shared | None = None,
    ) -> None:
        self.settings = settings
        self.rng = rng
        self.mutations = mutations or Mutations()
        #: which election the actions of this scope belong to ("" for the session's own)
        self.origin = origin
        self._s = shared or _Shared()

    def scope(self, settings: Config, origin: str) -> Context:
        """A context for election *origin* on this one's output, timers and ids."""
        return Context(settings, self.rng, self.mutations, origin=origin, shared=self._s)

    @property
    def out(self) -> list[Action]:
        return self._s.out

    # -- ids -------------------------------------------------------------------------------

    def new_id(self) -> int:
        """A call or watch id, unique in the session."""
        self._s.next_id += 1
        return self._s.next_id

    def new_seq(self) -> int:
        """The sequence number of a Deliver, unique in the session."""
        self._s.next_seq += 1
        return self._s.next_seq

    # -- calls -----------------------------------------------------------------------------

    def call(self, request: Request, timeout: float, handler: Handler) -> int:
        """Ask for *request* to be sent; *handler(now, answer)* gets its answer."""
        call_id = self.new_id()
        self._s.calls[call_id] = handler
        self._s.out.append(Call(call_id, request, max(0.001, timeout), self.origin))
        return call_id

    def answer(self, now: float, call_id: int, answer: Answer) -> None:
        handler = self._s.calls.pop(call_id, None)
        if handler is not None:  # else: nobody waits for it any more
            handler(now, answer)

    def forget(self, call_id: int | None) -> None:
        if call_id is not None:
            self._s.calls.pop(call_id, None)

    def pending_calls(self) -> int:
        return len(self._s.calls)

    # -- timers ----------------------------------------------------------------------------

    def set_timer(self, name: str, at: float, handler: TimerHandler) -> None:
        self._s.timers[(self.origin, name)] = (at, handler)

    def cancel_timer(self, name: str) -> None:
        self._s.timers.pop((self.origin, name), None)

    def wake_at(self) -> float | None:
        """When the core next needs ``tick()`` (None: only on input)."""
        return min((at for at, _ in self._s.timers.values()), default=None)

    def run_timers(self, now: float) -> None:
        """Fire every timer due at *now* (of every scope), earliest first (a handler may set
        new ones)."""
        timers = self._s.timers
        for _ in range(10_000):  # bounded: a handler that re-arms itself at once is a bug
            due = [(at, key) for key, (at, _) in timers.items() if at <= now]
            if not due:
                return
            _, key = min(due)
            _, handler = timers.pop(key)
            handler(now)
        raise RuntimeError("timers keep firing at one instant")

    # -- output ----------------------------------------------------------------------------

    def take(self) -> list[Action]:
        out, self._s.out = self._s.out, []
        return out


def call_deadline(call_timeout: float, lease_left: float) -> float:
    """A call's deadline on behalf of a lease: never past the lease's local deadline (and
    never zero, which gRPC takes as "no deadline")."""
    return max(0.001, min(call_timeout, lease_left))


def retry_wait(rng: random.Random, attempt: int, initial: float = 0.05, maximum: float = 2.0) -> float:
    """Seconds before retry number *attempt* of a background step: exponential from
    *initial* to *maximum*, plus up to *initial* of jitter (the ``_retry`` policy)."""
    return min(maximum, initial * 2.0 ** (attempt - 1)) + rng.uniform(0, initial)


def min_lease(ttl: float, guard: float) -> float:
    """The lease a candidate must have ahead of it to take a term: a renewal interval, and
    never more than half what is left right after a renewal (else a large guard would keep
    it waiting for ever). With less, its renewals are failing right now: a term taken with
    173 ms left ended 180 ms later."""
    return min(ttl / 3, (ttl - guard) / 2)


def reconnect_wait(rng: random.Random | types.ModuleType, failures: int) -> float:
    """Seconds before watch reconnect number *failures* in a row: 50 ms doubling to 2 s, jittered."""
    base = min(2.0, 0.05 * 2.0 ** (failures - 1))
    return base / 2 + rng.uniform(0, base / 2)
