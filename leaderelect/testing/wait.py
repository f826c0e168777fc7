"""Waiting for a condition, bounded in time."""

from __future__ import annotations

import threading
import time
from typing import Any


def wait_until(predicate: Any, timeout: float, interval: float = 0.01) -> bool:
    """Poll *predicate* until it is true (returns True) or *timeout* seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        threading.Event().wait(interval)
