"""The one clock every deadline in leaderelect is read on.

``time.monotonic()`` (CLOCK_MONOTONIC on Linux) stops while the host or VM is suspended;
etcd's lease clock, on another machine, does not. A leader whose host slept through its
TTL would wake with a deadline that had not moved on and read itself leader for up to a
TTL after etcd expired its lease. CLOCK_BOOTTIME counts suspended time, so the deadline
passes during the sleep as it does on the server. Where the platform has no such clock
(macOS, Windows), this is ``time.monotonic()``, and a suspended host is not covered.
Both are host-wide, so several processes on one host can compare their readings.
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["clock", "clock_name"]


def _pick() -> tuple[Callable[[], float], str]:
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        try:
            time.clock_gettime(boottime)
        except OSError:  # declared but refused (an old kernel, a sandbox)
            pass
        else:

            def boottime_clock() -> float:
                return time.clock_gettime(boottime)

            return boottime_clock, "CLOCK_BOOTTIME"
    return time.monotonic, "time.monotonic"


_now, clock_name = _pick()


def clock() -> float:
    """Seconds on leaderelect's clock: CLOCK_BOOTTIME where the platform has it (it keeps
    counting while the host is suspended), else ``time.monotonic()``. ``Term.valid_until``
    and every other instant leaderelect reports are on this clock."""
    return _now()
