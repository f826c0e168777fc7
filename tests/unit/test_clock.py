"""Deadlines are read on a clock that keeps counting while the host is suspended.

etcd's lease clock runs on while a laptop or VM sleeps; CLOCK_MONOTONIC does not. A leader
whose host slept through its TTL would have woken with its deadline still ahead of it.
"""

from __future__ import annotations

import inspect
import sys
import time

import pytest

import leaderelect
from leaderelect import LeaderElector, Lease
from leaderelect._dispatch import Dispatcher
from leaderelect._observer import Observer


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CLOCK_BOOTTIME is Linux's")
def test_the_clock_is_boottime_on_linux() -> None:
    before = time.clock_gettime(time.CLOCK_BOOTTIME)
    now = leaderelect.clock()
    after = time.clock_gettime(time.CLOCK_BOOTTIME)
    assert before <= now <= after
    assert leaderelect._clock.clock_name == "CLOCK_BOOTTIME"


@pytest.mark.parametrize("owner", [Lease.__init__, Observer.__init__, Dispatcher.__init__])
def test_every_deadline_defaults_to_that_clock(owner: object) -> None:
    assert inspect.signature(owner).parameters["clock"].default is leaderelect.clock  # type: ignore[arg-type]


def test_electors_and_sessions_run_on_that_clock() -> None:
    """(No clock parameter: a test-only knob left their public signatures.)"""
    elector = LeaderElector("jobs", endpoints="127.0.0.1:1", ttl=2)
    try:
        assert elector.session._clock is leaderelect.clock
        assert elector._clock is leaderelect.clock
    finally:
        elector.stop()


def test_a_lease_deadline_is_on_that_clock() -> None:
    lease = Lease(1, 10, leaderelect.clock() + 5)
    assert 4.9 < lease.remaining() <= 5
    assert lease.alive()
