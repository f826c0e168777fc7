"""Test helpers: record callbacks with timestamps."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any

from leaderelect import LeaderElector


class Recorder:
    """Registers on all three callbacks of an elector and keeps (t, kind, args)."""

    def __init__(self, elector: LeaderElector) -> None:
        self.events: list[tuple[float, str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        elector.on_elected(lambda *a: self._add("elected", a))
        elector.on_demoted(lambda *a: self._add("demoted", a))
        elector.on_leader_changed(lambda *a: self._add("leader_changed", a))

    def _add(self, kind: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self.events.append((time.monotonic(), kind, args))

    def kinds(self, *only: str) -> list[str]:
        with self._lock:
            return [k for _, k, _ in self.events if not only or k in only]

    def last(self, kind: str) -> tuple[float, tuple[Any, ...]]:
        with self._lock:
            for t, k, a in reversed(self.events):
                if k == kind:
                    return t, a
        raise LookupError(kind)


def end_processes(procs: list[subprocess.Popen[Any]], timeout: float) -> None:
    """End the processes a test started (by PID): wake any it paused, ask them to stop,
    then kill what did not within *timeout* seconds."""
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
