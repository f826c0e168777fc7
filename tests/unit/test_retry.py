"""The retry policy: backoff grows with jitter, stops on the event, skips expired leases."""

from __future__ import annotations

import threading

import pytest

from leaderelect._retry import retrying
from leaderelect.exceptions import EtcdUnavailableError, LeaseExpiredError


def test_retries_unavailable_with_growing_backoff() -> None:
    sleeps: list[float] = []
    stop = threading.Event()
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 6:
            raise EtcdUnavailableError("down")
        return "ok"

    assert retrying(stop, "op", initial=0.1, maximum=1.0, sleep=sleeps.append)(flaky) == "ok"
    assert calls == 6
    assert len(sleeps) == 5
    assert all(0 <= s <= 1.0 + 0.1 for s in sleeps)  # max plus at most one jitter
    assert sleeps[-1] > sleeps[0]


def test_stop_event_ends_retries_with_the_last_error() -> None:
    stop = threading.Event()
    sleeps: list[float] = []

    def always_down() -> None:
        raise EtcdUnavailableError("down")

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            stop.set()

    with pytest.raises(EtcdUnavailableError):
        retrying(stop, "op", sleep=sleep)(always_down)
    assert len(sleeps) == 3


def test_expired_lease_is_not_retried() -> None:
    stop = threading.Event()
    calls = 0

    def expired() -> None:
        nonlocal calls
        calls += 1
        raise LeaseExpiredError("gone")

    with pytest.raises(LeaseExpiredError):
        retrying(stop, "op", sleep=lambda s: None)(expired)
    assert calls == 1


def test_default_sleep_wakes_on_stop() -> None:
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()

    def always_down() -> None:
        raise EtcdUnavailableError("down")

    with pytest.raises(EtcdUnavailableError):
        retrying(stop, "op", initial=30.0, maximum=30.0)(always_down)
