"""tenacity policies for the background loops: jittered, logged, stopped by an Event.

Every backoff sleep waits on the stop event, so ``stop()`` interrupts it at once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import tenacity

from leaderelect.exceptions import EtcdError, LeaseExpiredError

log = logging.getLogger(__name__)


def _retryable(exc: BaseException) -> bool:
    # Any etcd error is retried by a background loop (a thread must not die of one);
    # an expired lease is not: it ends the term and its caller starts a new one.
    return isinstance(exc, EtcdError) and not isinstance(exc, LeaseExpiredError)


def retrying(
    stop: threading.Event,
    what: str,
    *,
    initial: float = 0.05,
    maximum: float = 2.0,
    sleep: Callable[[float], Any] | None = None,
) -> tenacity.Retrying:
    """A policy for one background operation named *what* (it appears in the logs).

    Exponential backoff from *initial* to *maximum* seconds, plus random jitter of up to
    *initial*; ends (re-raising the last error) once *stop* is set.
    """
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_retryable),
        # wait_exponential + wait_random: the same on tenacity 8.2 and 9.x (whose jitter API changed)
        wait=tenacity.wait_exponential(multiplier=initial, max=maximum) + tenacity.wait_random(0, initial),
        stop=tenacity.stop_when_event_set(stop),
        sleep=sleep if sleep is not None else tenacity.sleep_using_event(stop),
        before_sleep=_log_retry(what),
        reraise=True,
    )


def _log_retry(what: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        # The first failure is often a member failing over: say it quietly.
        level = logging.INFO if state.attempt_number == 1 else logging.WARNING
        log.log(level, "%s failed (attempt %d): %s; retrying in %.2f s", what, state.attempt_number, exc, delay)

    return before_sleep
