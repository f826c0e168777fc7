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


class Context:
    """The state every part of one core shares."""

    def __init__(self, settings: Config, rng: random.Random, mutations: Mutations | None = None) -> None:
        self.settings = settings
        self.rng = rng
        self.mutations = mutations or Mutations()
        self.out: list[Action] = []
        self._timers: dict[str, tuple[float, TimerHandler]] = {}
        self._calls: dict[int, Handler] = {}
        self._next_id = 0

    # -- ids -------------------------------------------------------------------------------

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # -- calls -----------------------------------------------------------------------------

    def call(self, request: Request, timeout: float, handler: Handler) -> int:
        """Ask for *request* to be sent; *handler(now, answer)* gets its answer."""
        call_id = self.new_id()
        self._calls[call_id] = handler
        self.out.append(Call(call_id, request, max(0.001, timeout)))
        return call_id

    def answer(self, now: float, call_id: int, answer: Answer) -> None:
        handler = self._calls.pop(call_id, None)
        if handler is not None:  # else: nobody waits for it any more
            handler(now, answer)

    def forget(self, call_id: int | None) -> None:
        if call_id is not None:
            self._calls.pop(call_id, None)

    def pending_calls(self) -> int:
        return len(self._calls)

    # -- timers ----------------------------------------------------------------------------

    def set_timer(self, name: str, at: float, handler: TimerHandler) -> None:
        self._timers[name] = (at, handler)

    def cancel_timer(self, name: str) -> None:
        self._timers.pop(name, None)

    def wake_at(self) -> float | None:
        """When the core next needs ``tick()`` (None: only on input)."""
        return min((at for at, _ in self._timers.values()), default=None)

    def run_timers(self, now: float) -> None:
        """Fire every timer due at *now*, earliest first (a handler may set new ones)."""
        for _ in range(10_000):  # bounded: a handler that re-arms itself at once is a bug
            due = [(at, name) for name, (at, _) in self._timers.items() if at <= now]
            if not due:
                return
            _, name = min(due)
            _, handler = self._timers.pop(name)
            handler(now)
        raise RuntimeError("timers keep firing at one instant")

    # -- output ----------------------------------------------------------------------------

    def take(self) -> list[Action]:
        out, self.out = self.out, []
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
