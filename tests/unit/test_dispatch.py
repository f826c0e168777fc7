"""The dispatcher: order, isolation of raising and slow callbacks, close from inside."""

from __future__ import annotations

import logging
import threading

import pytest

from leaderelect._dispatch import Dispatcher


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_runs_in_submission_order_on_its_own_thread() -> None:
    seen: list[tuple[int, str]] = []
    d = Dispatcher("t", slow_after=1.0)
    d.start()
    for i in range(100):
        d.submit("x", [lambda i=i: seen.append((i, threading.current_thread().name))])
    assert d.close(5)
    assert [i for i, _ in seen] == list(range(100))
    assert {name for _, name in seen} == {"leaderelect-callbacks-t"}


def test_raising_callback_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    d = Dispatcher("t", slow_after=1.0)
    d.start()
    done = d.submit("on_elected", [boom, lambda: seen.append("after")])
    assert done.wait(5)
    assert d.close(5)
    assert seen == ["after"]
    assert any("raised" in r.message and r.exc_info for r in caplog.records)


def test_slow_callback_warns(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()

    def slow() -> None:
        clock.now += 5.0

    d = Dispatcher("t", slow_after=1.0, clock=clock)
    d.start()
    with caplog.at_level(logging.WARNING):
        d.submit("on_demoted", [slow]).wait(5)
        d.submit("on_demoted", [lambda: None]).wait(5)
    d.close(5)
    slow_warnings = [r for r in caplog.records if "took" in r.message]
    assert len(slow_warnings) == 1
    assert "5.00 s" in slow_warnings[0].getMessage()


def test_close_from_inside_a_callback_does_not_deadlock() -> None:
    d = Dispatcher("t", slow_after=1.0)
    d.start()
    result: list[bool] = []
    d.submit("x", [lambda: result.append(d.close(5))]).wait(5)
    assert result == [True]
    assert d.in_dispatcher() is False
    d._thread.join(5)
    assert not d._thread.is_alive()


def test_submit_after_close_is_dropped_but_signalled() -> None:
    d = Dispatcher("t", slow_after=1.0)
    d.start()
    d.close(5)
    ran: list[int] = []
    assert d.submit("x", [lambda: ran.append(1)]).is_set()
    assert ran == []


def test_close_gives_up_on_a_hung_callback() -> None:
    release = threading.Event()
    d = Dispatcher("t", slow_after=10.0)
    d.start()
    d.submit("x", [lambda: release.wait(10)])
    assert d.close(0.2) is False
    release.set()
    d._thread.join(5)


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
def test_a_base_exception_from_a_callback_is_contained(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    """sys.exit() in a callback used to end the dispatcher thread: every later callback,
    on_demoted included, never ran, and each step-down waited out demote_timeout."""
    seen: list[str] = []

    def leave() -> None:
        raise exc

    d = Dispatcher("t", slow_after=1.0)
    d.start()
    assert d.submit("on_elected", [leave, lambda: seen.append("same job")]).wait(5)
    assert d.submit("on_demoted", [lambda: seen.append("next job")]).wait(5)
    assert seen == ["same job", "next job"]
    assert d._thread.is_alive()
    assert d.close(5)
    assert any("raised" in r.message and r.exc_info for r in caplog.records)


def test_a_waiting_leader_change_is_updated_to_the_newest_not_queued_again() -> None:
    """Behind a slow callback every leader change queued a call of its own: a flapping
    leader built a backlog of stale leaders, run long after they mattered."""
    seen: list[str] = []
    release = threading.Event()
    d = Dispatcher("t", slow_after=10.0)
    d.start()
    d.submit("on_elected", [lambda: release.wait(5)])  # a slow callback ahead
    for leader in ("a", "b", "c"):
        d.submit("on_leader_changed", [seen.append], leader, latest_only=True)
    d.submit("on_demoted", [lambda: seen.append("demoted")])
    for leader in ("d", "e"):
        d.submit("on_leader_changed", [seen.append], leader, latest_only=True)
    release.set()
    assert d.close(5)
    # the newest of each run of changes, and never out of order with the other callbacks
    assert seen == ["c", "demoted", "e"]


def _while_a_first_change_runs(*leaders: str) -> list[str]:
    """on_leader_changed("a") runs slowly; *leaders* are submitted meanwhile; what ran."""
    seen: list[str] = []
    running, release = threading.Event(), threading.Event()

    def first(leader: str) -> None:
        running.set()
        release.wait(5)
        seen.append(leader)

    d = Dispatcher("t", slow_after=10.0)
    d.start()
    d.submit("on_leader_changed", [first], "a", latest_only=True)
    assert running.wait(5)
    for leader in leaders:
        d.submit("on_leader_changed", [seen.append], leader, latest_only=True)
    release.set()
    assert d.close(5)
    return seen


def test_a_leader_change_that_began_running_is_not_changed() -> None:
    assert _while_a_first_change_runs("b") == ["a", "b"]


def test_a_leader_change_and_back_while_the_first_call_runs_is_not_reported_again() -> None:
    """Merged into the waiting call, a change to B and back to A gave on_leader_changed(A)
    twice in a row: no change at all, reported as one."""
    assert _while_a_first_change_runs("b", "a") == ["a"]
    assert _while_a_first_change_runs("b", "a", "c") == ["a", "c"]


def test_then_runs_after_the_callbacks_even_when_one_raises_and_at_once_once_closed() -> None:
    """``then`` is how the core learns that on_demoted returned (the key is handed over
    only after): it must run after the callbacks, after a raising one too, and never be lost
    to a closed dispatcher."""
    seen: list[str] = []

    def boom() -> None:
        seen.append("callback")
        raise RuntimeError("boom")

    d = Dispatcher("t", slow_after=1.0)
    d.start()
    d.submit("on_demoted", [boom], then=lambda: seen.append(f"then on {threading.current_thread().name}"))
    assert d.close(5)
    assert seen == ["callback", "then on leaderelect-callbacks-t"]
    d.submit("on_demoted", [boom], then=lambda: seen.append("then, closed"))
    assert seen[-1] == "then, closed"  # the callbacks were dropped, not the hand-over
