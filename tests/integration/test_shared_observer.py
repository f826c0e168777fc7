"""Electors in one process that reach etcd the same way share one observer per election and
one watch stream; electors that reach it another way (here: through a fault proxy) do not."""

from __future__ import annotations

import threading
import time
from typing import Any

from leaderelect import Session
from leaderelect._observer import Observer
from leaderelect.core.queue import View
from leaderelect.testing import EtcdServer, FaultProxy, wait_until
from tests.conftest import ElectorFactory


def threads(name: str) -> int:
    return sum(t.name == name for t in threading.enumerate())


def test_candidates_of_one_election_share_an_observer_and_hand_off(make_elector: ElectorFactory, name: str) -> None:
    watch_readers = threads("leaderelect-watch")
    electors = [make_elector(f"c{i}").start() for i in range(5)]
    assert wait_until(lambda: sum(e.is_leader for e in electors) == 1, 10)
    assert threads(f"leaderelect-observe-{name}") == 1
    assert threads("leaderelect-watch") == watch_readers + 1
    for _ in range(4):  # every handoff goes to the next in the queue, all on the shared view
        leader = next(e for e in electors if e.is_leader)
        assert leader.resign(cooldown=5)
        assert wait_until(lambda old=leader: sum(e.is_leader for e in electors if e is not old) == 1, 5)
        assert wait_until(lambda old=leader.value: all(e.leader and e.leader.value != old for e in electors), 5)
    electors[0].stop()
    assert threads(f"leaderelect-observe-{name}") == 1  # the others still use it
    survivor = electors[1]
    assert survivor.leader is not None
    assert electors[0].leader is None  # a stopped elector shows nothing, not a stale leader


def test_different_elections_share_one_stream(make_elector: ElectorFactory, name: str) -> None:
    watch_readers = threads("leaderelect-watch")
    electors = [make_elector(name=f"{name}-{i}").start() for i in range(10)]
    assert wait_until(lambda: all(e.is_leader for e in electors), 10)
    assert threads("leaderelect-watch") == watch_readers + 1


def test_a_different_path_to_etcd_is_observed_apart(make_elector: ElectorFactory, etcd: EtcdServer) -> None:
    with FaultProxy(etcd.endpoint) as proxy:
        direct = make_elector("direct").start()
        assert direct.wait_elected(5)
        proxied = make_elector("proxied", endpoints=proxy.endpoint, keepalive_time=None, call_timeout=0.5).start()
        assert wait_until(lambda: proxied.leader is not None and proxied.leader.value == "direct", 5)
        proxy.set_mode("blackhole")
        # the proxied elector's own watch goes silent: it reports the leader as unknown, while
        # the direct one, on its own connection, still knows it
        assert wait_until(lambda: not proxied.observation.known, 10)
        assert direct.observation.known and direct.leader is not None
        proxy.set_mode("pass")
        assert wait_until(lambda: proxied.observation.known, 15)
        proxied.stop()


def test_observing_leaves_a_member_the_session_found_failing(make_elector: ElectorFactory) -> None:
    elector = make_elector("x").start()
    assert elector.wait_elected(5)
    observing = elector._observer._client  # type: ignore[union-attr]
    session_client = elector._session.client
    assert observing is not session_client
    before = observing.reconnects
    session_client.failover(session_client.current())  # as after a failed renewal
    assert observing.reconnects == before + 1
    assert wait_until(lambda: elector.observation.known and elector.leader is not None, 5)
    assert elector.is_leader


def test_a_burst_of_changes_reaches_a_slow_listener_as_one_view(etcd: EtcdServer, name: str, etcd3_client: Any) -> None:
    """Each watch response was published to every listener, one after another: a process
    with 200 electors (200 listeners) took its turn 2 s after a burst of 800 deletions. The
    responses that wait behind a slow publication are applied together, and published once."""
    leases = [etcd3_client.lease(30) for _ in range(60)]
    for lease in leases:
        etcd3_client.put(f"{name}/{lease.id:x}", "c", lease=lease)
    views: list[View] = []
    blocked, release = threading.Event(), threading.Event()

    def listener(view: View) -> None:
        views.append(view)
        if view.known and view.size < len(leases) and not blocked.is_set():
            blocked.set()
            release.wait(10)  # a slow publication: the rest of the burst queues behind it

    with Session(etcd.endpoint, ttl=5) as session:
        observer = Observer(session.client, name, listener, probe_interval=1.0)
        observer.start()
        try:
            assert wait_until(lambda: bool(views) and views[-1].size == len(leases), 10)
            leases[0].revoke()
            assert blocked.wait(5)
            for lease in leases[1:]:
                lease.revoke()
            time.sleep(0.5)  # every deletion has reached the watch stream
            seen = len(views)
            release.set()
            assert wait_until(lambda: views[-1].size == 0, 5), views[-1]
            assert views[-1].leader is None and views[-1].known
            assert len(views) - seen <= 3, f"{len(views) - seen} views published for one burst"
        finally:
            release.set()
            observer.close(5)
