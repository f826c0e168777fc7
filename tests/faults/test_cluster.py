"""A 3-member etcd cluster: losing the raft leader member never splits the election."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from leaderelect import LeaderElector
from leaderelect.testing import EtcdCluster, wait_until
from tests.conftest import leaderelect_threads
from tests.helpers import Recorder

pytestmark = [pytest.mark.faults, pytest.mark.cluster]


@pytest.fixture
def electors(cluster: EtcdCluster, name: str) -> Iterator[list[LeaderElector]]:
    before = set(leaderelect_threads())
    # ttl 5: an outage of a member (~1 s until writes work again) fits in ttl - guard
    made = [LeaderElector(name, f"c{i}", endpoints=cluster.endpoints, ttl=5, call_timeout=0.5) for i in range(3)]
    # spread the electors over the members: each starts on a different endpoint
    for i, elector in enumerate(made):
        elector._session.client._index = i
    yield made
    for elector in made:
        elector.stop()
    assert wait_until(lambda: set(leaderelect_threads()) <= before, 10)


def test_killing_the_raft_leader_member_never_splits(cluster: EtcdCluster, electors: list[LeaderElector]) -> None:
    recorders = [Recorder(e) for e in electors]
    for elector in electors:
        elector.start()
    assert wait_until(lambda: sum(e.is_leader for e in electors) == 1, 20)
    assert wait_until(lambda: len(electors[0].participants()) == 3, 20)
    leader = next(e for e in electors if e.is_leader)
    member = cluster.leader()
    member.kill()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert sum(e.is_leader for e in electors) <= 1
        time.sleep(0.005)
    assert wait_until(lambda: sum(e.is_leader for e in electors) == 1, 10)
    # the outage was shorter than ttl - guard: the leader kept its term
    assert leader.is_leader
    assert recorders[electors.index(leader)].kinds("elected", "demoted") == ["elected"]
    member.start()
    assert wait_until(lambda: all(e.observation.known for e in electors), 15)
    assert {e.leader.value for e in electors if e.leader} == {leader.term.value}  # type: ignore[union-attr]


def test_a_leader_on_a_frozen_member_keeps_its_term_at_ttl_3(cluster: EtcdCluster, name: str) -> None:
    """A renewal sent to a member that froze (SIGSTOP) waited out its whole call deadline
    (2 s by default) before trying another member; at ttl 3 the deadline (2.5 s after the
    last renewal was sent) came first, and the leader lost its term in most tries."""
    raft = cluster.leader()
    frozen = next(m for m in cluster.members if m is not raft)  # the cluster itself stays healthy
    others = [m.endpoint for m in cluster.members if m is not frozen]
    elector = LeaderElector(name, "on-frozen", endpoints=[frozen.endpoint, *others], ttl=3)
    rec = Recorder(elector)
    with elector:
        assert elector.wait_elected(20)
        assert elector.status()["endpoint"] == frozen.endpoint
        frozen.pause()
        try:
            deadline = time.monotonic() + 6  # past two whole lease validities
            while time.monotonic() < deadline:
                assert elector.is_leader, elector.status()
                time.sleep(0.02)
        finally:
            frozen.resume()
        assert elector.status()["endpoint"] != frozen.endpoint
        assert rec.kinds("elected", "demoted") == ["elected"]
