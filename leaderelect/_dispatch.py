"""Runs user callbacks on one thread, in order, isolated from renewal and demotion.

The election threads only *enqueue*; a slow or raising callback delays nothing but the
callbacks queued behind it (kazoo runs listeners on its connection thread, and a blocking
one deadlocks the client: its issues #381, #356, #405).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any, Callable

from leaderelect import _clock
from leaderelect._threads import ours

log = logging.getLogger(__name__)

Callback = Callable[..., Any]


class _Job:
    __slots__ = ("args", "callbacks", "done", "started", "then", "what")

    def __init__(
        self, what: str, callbacks: Sequence[Callback], args: tuple[Any, ...], then: Callable[[], None] | None
    ) -> None:
        self.what = what
        self.callbacks = callbacks
        self.args = args
        self.then = then
        self.done = threading.Event()
        self.started = False

    def finish(self, name: str) -> None:
        self.done.set()
        if self.then is not None:
            try:
                self.then()
            except Exception:
                log.exception("[%s] after %s", name, self.what)


class Dispatcher:
    """One daemon thread that runs queued callbacks in order.

    :param name: used in the thread name and in every log line.
    :param slow_after: a callback running longer than this many seconds earns a warning.
    :param clock: monotonic clock, injectable for tests.
    """

    def __init__(self, name: str, *, slow_after: float, clock: Callable[[], float] = _clock.clock) -> None:
        self.name = name
        self.slow_after = slow_after
        self._clock = clock
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=ours(self._run), name=f"leaderelect-callbacks-{name}", daemon=True)
        self._started = False
        self._closed = False
        self._lock = threading.Lock()
        self._last: _Job | None = None  # the job queued last
        self._begun: dict[str, tuple[Any, ...]] = {}  # the arguments of the last job of each kind begun

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()

    def submit(
        self,
        what: str,
        callbacks: Sequence[Callback],
        *args: Any,
        latest_only: bool = False,
        then: Callable[[], None] | None = None,
    ) -> threading.Event:
        """Queue *callbacks* (run one after another with *args*); the Event is set when done,
        and then *then()* runs (on the dispatcher; at once if the dispatcher is closed).

        *latest_only*: if the job queued last is a *what* that has not begun, it takes these
        callbacks and arguments instead of queuing another (a leader change that waits
        behind a slow callback runs once, with the newest leader; never before a job queued
        ahead of it, never after one queued behind it). Brought back to the arguments of the
        last *what* begun (a change and back), it runs nothing.
        """
        job = _Job(what, list(callbacks), args, then)
        with self._lock:
            closed = self._closed
            last = self._last
            if closed:
                log.warning("[%s] %s dropped: the elector is stopped", self.name, what)
            elif latest_only and then is None and last is not None and last.what == what and not last.started:
                # Back to what the last one begun was given (a change and back): no change to report.
                unchanged = what in self._begun and self._begun[what] == args
                last.callbacks, last.args = ([] if unchanged else job.callbacks), args
                return last.done
            else:
                self._queue.put(job)
                self._last = job
        if closed:
            job.finish(self.name)
        return job.done

    def in_dispatcher(self) -> bool:
        """True when called from a callback (so the caller must not wait for this thread)."""
        return threading.current_thread() is self._thread

    def close(self, timeout: float | None) -> bool:
        """Run what is queued, then end the thread; join it unless called from it.

        Returns False when the thread did not end within *timeout* (a callback hangs).
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
            started = self._started
        if not started or self.in_dispatcher():
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("[%s] a callback is still running after %.1f s; leaving its thread behind", self.name, timeout)
            return False
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                job.started = True  # from here on, submit() queues a new job
                callbacks, args = job.callbacks, job.args
                if callbacks:
                    self._begun[job.what] = args
            try:
                for callback in callbacks:
                    self._call(job.what, callback, args)
            finally:
                job.finish(self.name)

    def _call(self, what: str, callback: Callback, args: tuple[Any, ...]) -> None:
        started = self._clock()
        try:
            callback(*args)
        except BaseException:
            # A SystemExit or KeyboardInterrupt raised by user code here would otherwise end the
            # dispatcher: on_demoted would never fire and every later step-down would wait out
            # demote_timeout. It is user code's exception, not a request to stop the process.
            log.exception("[%s] %s callback %s raised", self.name, what, _describe(callback))
        elapsed = self._clock() - started
        if elapsed > self.slow_after:
            log.warning(
                "[%s] %s callback %s took %.2f s (over %.2f s); later callbacks waited for it",
                self.name,
                what,
                _describe(callback),
                elapsed,
                self.slow_after,
            )


def _describe(callback: Callback) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)
