"""A module-level lock that a forked child gets back as it should be.

A lock held by one of the parent's threads at ``fork()`` stays held in the child for ever:
the thread that would release it does not exist there. A child that then starts an elector
(gunicorn's ``post_fork``, the recommended way) would hang on it. Locks that live for the
whole process (pools, registries) are made anew in the child; their state is the parent's
and is keyed or checked by pid where it matters.
"""

from __future__ import annotations

import os
import threading
from typing import Any


class ForkSafeLock:
    """``threading.Lock`` behaviour (``with``, ``acquire``, ``release``), made anew in a
    forked child: free, unless the thread that forked held it (it goes on to release it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork()
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        lock = threading.Lock()
        if self._owner is not None and self._owner == threading.get_ident():
            lock.acquire()  # the forking thread keeps its ident, and will release it
        else:
            self._owner = None
        self._lock = lock

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        taken = self._lock.acquire(blocking, timeout)
        if taken:
            self._owner = threading.get_ident()
        return taken

    def release(self) -> None:
        self._owner = None
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
