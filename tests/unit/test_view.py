"""Queue arithmetic of the observer, and the prefix range end."""

from __future__ import annotations

import random

from leaderelect._etcd import prefix_end
from leaderelect.core.queue import CandidateQueue
from leaderelect.election import Candidate, candidate_key


def cand(token: int, value: bytes = b"v") -> Candidate:
    return Candidate(key=f"e/{token:x}", raw_value=value, token=token, lease_id=token, mod_revision=token)


def test_leader_and_predecessor() -> None:
    queue = CandidateQueue([cand(7), cand(3), cand(5)])
    assert queue.leader == cand(3)
    assert queue.predecessor(7) == cand(5)
    assert queue.predecessor(5) == cand(3)
    assert queue.predecessor(3) is None
    assert [c.token for c in queue.ordered()] == [3, 5, 7]
    assert "e/5" in queue and len(queue) == 3


def test_delete_and_value_change() -> None:
    queue = CandidateQueue([cand(3), cand(5)])
    queue.put(cand(3, b"proclaimed"))  # same key, same token: a value change, not a new place
    assert len(queue) == 2 and queue.leader is not None and queue.leader.raw_value == b"proclaimed"
    queue.delete("e/3")
    assert queue.leader == cand(5)
    queue.delete("e/3")  # deleting twice is harmless
    assert len(queue) == 1


def test_matches_a_naive_model_under_random_operations() -> None:
    rng = random.Random(7)
    queue, model = CandidateQueue(), {}
    for _ in range(2000):
        token = rng.randrange(1, 200)
        if rng.random() < 0.5:
            queue.put(cand(token))
            model[f"e/{token:x}"] = cand(token)
        else:
            queue.delete(f"e/{token:x}")
            model.pop(f"e/{token:x}", None)
        ordered = sorted(model.values(), key=lambda c: c.token)
        assert queue.ordered() == ordered
        probe = rng.randrange(1, 200)
        ahead = [c for c in ordered if c.token < probe]
        assert queue.predecessor(probe) == (ahead[-1] if ahead else None)


def test_empty_queue() -> None:
    assert CandidateQueue().leader is None
    assert CandidateQueue().predecessor(1) is None


def test_prefix_end() -> None:
    assert prefix_end(b"jobs/") == b"jobs0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_candidate_key_is_lease_in_hex_like_etcd() -> None:
    assert candidate_key("jobs", 0x694D7B2A3C1F0A12) == b"jobs/694d7b2a3c1f0a12"


def test_a_new_listener_never_gets_an_older_view_after_a_newer_one() -> None:
    """The current view used to be handed back to the caller, who delivered it after the
    observer's lock was released: a view published in between reached the listener first,
    and the stale one after it (on_leader_changed went back in time)."""
    import threading
    from typing import Any, cast

    from leaderelect._observer import Observer
    from leaderelect.core.queue import View

    observer = Observer(cast(Any, None), "e", probe_interval=1.0)  # never started: no etcd
    observer._publish(1, True, 0.0)
    seen: list[int] = []
    first_call = threading.Event()
    release = threading.Event()

    def listener(view: View) -> None:
        seen.append(view.revision)
        if len(seen) == 1:
            first_call.set()
            release.wait(5)  # a slow delivery of the current view

    adding = threading.Thread(target=observer.add_listener, args=(listener,))
    adding.start()
    assert first_call.wait(5), "the current view is delivered by add_listener itself"
    publishing = threading.Thread(target=observer._publish, args=(2, True, 0.0))
    publishing.start()
    publishing.join(0.2)
    release.set()
    adding.join(5)
    publishing.join(5)
    assert seen == [1, 2]
