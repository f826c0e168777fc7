"""Module-level locks come back unlocked in a forked child (real fork(), no etcd)."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from leaderelect import _observer
from leaderelect._forksafe import ForkSafeLock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def child_can_take(lock: Any) -> bool:
    """Fork while another thread holds *lock*: can the child take it (within 1 s)?"""
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            done.wait(10)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(5)
    try:
        pid = os.fork()
        if pid == 0:  # the child: report, and leave at once
            os._exit(0 if lock.acquire(timeout=1) else 1)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0
    finally:
        done.set()
        holder.join(5)


def test_the_observer_pool_lock_is_free_in_a_forked_child() -> None:
    """acquire() holds the pool's lock while it hands a new elector its first view; a fork
    meanwhile (another thread starting an elector) left the lock held in the child for
    ever, and every elector the child started (in gunicorn's post_fork) hung in start()."""
    assert child_can_take(_observer._pool_lock)


def test_a_plain_lock_stays_held_in_the_child() -> None:
    """The control: what the pool's lock was before."""
    assert not child_can_take(threading.Lock())


def test_the_forking_thread_keeps_the_lock_it_held() -> None:
    """Made anew unlocked in the child, a lock the forking thread held raised on its release
    there ("release unlocked lock"); it is held in the child too, and released by it."""
    lock = ForkSafeLock()
    with lock:
        pid = os.fork()
        if pid == 0:
            held = not lock.acquire(blocking=False)
            try:
                lock.release()
                released = True
            except RuntimeError:
                released = False
            os._exit(0 if held and released else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
