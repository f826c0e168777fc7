"""Queue arithmetic of the observer's view, and the prefix range end."""

from __future__ import annotations

from leaderelect._etcd import prefix_end
from leaderelect._observer import View
from leaderelect.election import Candidate, candidate_key


def cand(token: int) -> Candidate:
    return Candidate(key=f"e/{token:x}", raw_value=b"v", token=token, lease_id=token, mod_revision=token)


def test_leader_and_predecessor() -> None:
    view = View(10, {c.key: c for c in (cand(7), cand(3), cand(5))}, True, 0.0)
    assert view.leader == cand(3)
    assert view.predecessor(7) == cand(5)
    assert view.predecessor(5) == cand(3)
    assert view.predecessor(3) is None
    assert [c.token for c in view.queue()] == [3, 5, 7]


def test_empty_view() -> None:
    assert View().leader is None
    assert View().predecessor(1) is None


def test_prefix_end() -> None:
    assert prefix_end(b"jobs/") == b"jobs0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_candidate_key_is_lease_in_hex_like_etcd() -> None:
    assert candidate_key("jobs", 0x694D7B2A3C1F0A12) == b"jobs/694d7b2a3c1f0a12"
