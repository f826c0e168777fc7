"""The observer publishes a burst of watch responses in batches, and a handoff at once.

Driven with a stand-in for the watch (the two methods the observer calls) and listeners
that burn CPU for a set time, as listeners cost; the observer times each publication.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple, cast

import pytest

from leaderelect import _observer
from leaderelect._etcd import pb
from leaderelect._observer import Observer
from leaderelect.core.queue import Candidate, CandidateQueue, View
from leaderelect.testing import wait_until


class FakeWatch:
    def __init__(self) -> None:
        self._items: queue.SimpleQueue[pb.WatchResponse | None] = queue.SimpleQueue()

    def put(self, *responses: pb.WatchResponse | None) -> None:
        for response in responses:
            self._items.put(response)

    def next_response(self, timeout: float | None = None) -> pb.WatchResponse | None:
        try:
            return self._items.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None

    def backlog(self) -> bool:
        return not self._items.empty()


def key(lease: int) -> str:
    return f"e/{lease:x}"


def joined(lease: int) -> pb.WatchResponse:
    kv = pb.KeyValue(key=key(lease).encode(), value=b"v", create_revision=lease, mod_revision=lease, lease=lease)
    return pb.WatchResponse(events=[pb.Event(type=pb.Event.PUT, kv=kv)])


def deleted(lease: int, revision: int) -> pb.WatchResponse:
    kv = pb.KeyValue(key=key(lease).encode(), mod_revision=revision)
    return pb.WatchResponse(events=[pb.Event(type=pb.Event.DELETE, kv=kv)])


class Shown(NamedTuple):
    leader: int | None
    size: int
    at: float


class Listener:
    """Costs *cost* CPU seconds a view; records each view as it begins."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.views: list[Shown] = []
        self.ended: list[float] = []  # when each view's call returned
        self._changed = threading.Condition()

    def __call__(self, view: View) -> None:
        with self._changed:
            self.views.append(Shown(view.leader.lease_id if view.leader else None, view.size, time.monotonic()))
            self._changed.notify_all()
        began = time.thread_time()
        while time.thread_time() - began < self.cost:
            pass
        self.ended.append(time.monotonic())

    def wait_for(self, leader: int | None, size: int) -> Shown:
        def found() -> Shown | None:
            return next((v for v in self.views if (v.leader, v.size) == (leader, size)), None)

        with self._changed:
            assert self._changed.wait_for(found, 10), self.views
        shown = found()
        assert shown is not None
        return shown


@pytest.fixture(autouse=True)
def long_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # so that what is held and what is not differ by tenths of seconds, not milliseconds
    monkeypatch.setattr(_observer, "COALESCE_FOR", 2.0)


@contextlib.contextmanager
def following(listener: Listener, *leases: int) -> Iterator[FakeWatch]:
    """An observer of election "e" with *leases* queued in that order, its first view shown
    and then a quiet spell (so the next change is published at once)."""
    observer = Observer(cast(Any, None), "e", listener, probe_interval=1.0)
    queued = CandidateQueue(Candidate(key(lease), b"v", lease, lease, lease) for lease in leases)
    observer._synced = (queued, max(leases))
    watch = FakeWatch()
    thread = threading.Thread(target=observer._follow, args=(watch,), daemon=True)
    thread.start()
    watch.put(pb.WatchResponse(created=True))
    first = listener.wait_for(leases[0], len(leases))
    # The hold after a publication is twice what it took on the wall clock, which is more
    # than the listener's CPU cost on a busy machine: sleep past the hold it measured.
    assert wait_until(lambda: listener.ended, 10), "the first view was not shown within 10 s"
    time.sleep(3 * (listener.ended[0] - first.at))
    try:
        yield watch
    finally:
        watch.put(None)
        thread.join(10)
        assert not thread.is_alive()


def test_a_handoff_is_published_at_once_after_a_join_was() -> None:
    """The leader's deletion, arriving while a join was being published, waited out the
    hold after it as well (up to 50 ms): the successor learned of its turn late."""
    listener = Listener(cost=0.2)  # a hold after a publication: 0.4 s
    with following(listener, 10, 11) as watch:
        sent = time.monotonic()
        watch.put(joined(12))
        join = listener.wait_for(10, 3)
        assert join.at - sent < 0.15  # after a quiet spell: at once
        watch.put(deleted(10, 13))  # the leader resigns while the join is being shown
        handoff = listener.wait_for(11, 2)
        # It waited for the join's publication only, not for a hold after it as well
        # (twice that publication: the gap would be three times it).
        shown_for = listener.ended[listener.views.index(join)] - join.at
        assert handoff.at - join.at < 2 * shown_for, (shown_for, listener.views)


def test_a_burst_of_handoffs_is_published_as_one_view() -> None:
    listener = Listener(cost=0.1)
    with following(listener, 10, 11, 12, 13, 14) as watch:
        watch.put(deleted(10, 20))
        listener.wait_for(11, 4)  # at once; while it is shown, three more go
        for revision, lease in enumerate((11, 12, 13), start=21):
            watch.put(deleted(lease, revision))
            time.sleep(0.01)
        listener.wait_for(14, 1)
        assert [v.leader for v in listener.views] == [10, 11, 14]


def test_what_came_last_is_shown_when_the_watch_ends() -> None:
    listener = Listener(cost=0.1)
    with following(listener, 10) as watch:
        watch.put(deleted(10, 20))
        listener.wait_for(None, 0)
        watch.put(joined(30))  # within the hold after the deletion's publication
    assert (listener.views[-1].leader, listener.views[-1].size) == (30, 1), listener.views


def test_a_bug_while_applying_a_burst_shows_none_of_it() -> None:
    """Changes applied but not yet shown were published on any exception, a bug's too:
    a queue left half applied was shown as known."""
    listener = Listener(cost=0.1)
    observer = Observer(cast(Any, None), "e", listener, probe_interval=1.0)
    observer._synced = (CandidateQueue([Candidate(key(10), b"v", 10, 10, 10)]), 10)
    real = observer._candidate

    def broken(kv: pb.KeyValue) -> Candidate | None:
        if kv.key == key(13).encode():
            raise RuntimeError("a bug")
        return real(kv)

    observer._candidate = broken  # type: ignore[method-assign]
    watch = FakeWatch()
    failed: list[BaseException] = []

    def follow() -> None:
        try:
            observer._follow(cast(Any, watch))
        except BaseException as err:
            failed.append(err)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    watch.put(pb.WatchResponse(created=True))
    listener.wait_for(10, 1)
    time.sleep(0.3)
    watch.put(joined(11))  # shown at once, after the quiet spell
    listener.wait_for(10, 2)
    watch.put(joined(12), joined(13))  # 12 is applied and held; 13 raises
    thread.join(5)
    assert [type(e) for e in failed] == [RuntimeError]
    assert [v.size for v in listener.views] == [1, 2], listener.views
