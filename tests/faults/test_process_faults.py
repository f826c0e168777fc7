"""Faults on real processes: kill -9, SIGSTOP, a blackholed connection, keepalive off."""

from __future__ import annotations

import time
from typing import Any

import pytest

from leaderelect import clock
from leaderelect._etcd import Endpoint, EtcdClient
from leaderelect.chaos.procs import Contender
from leaderelect.election import participants
from leaderelect.testing import EtcdServer, FaultProxy, wait_until
from tests.faults.conftest import ContenderFactory

pytestmark = pytest.mark.faults
TTL = 2


def queued(etcd: EtcdServer, name: str) -> int:
    host, port = etcd.endpoint.rsplit(":", 1)
    client = EtcdClient([Endpoint(host, int(port))], keepalive_time=None)
    try:
        return len(participants(client, name)[0])
    finally:
        client.close()


def elected_after(contender: Contender, t: float) -> dict[str, Any] | None:
    found = [e for e in contender.events() if e["ev"] == "elected" and e["t"] > t]
    return found[0] if found else None


def start_three(contenders: ContenderFactory, etcd: EtcdServer, name: str) -> list[Contender]:
    cs = [contenders(etcd.endpoint) for _ in range(3)]
    assert wait_until(lambda: sum(c.leads() for c in cs) == 1, 20)
    assert wait_until(lambda: queued(etcd, name) == 3, 20)
    return cs


def test_kill_9_of_the_leader_gives_a_successor_within_ttl_plus_2s(
    contenders: ContenderFactory, etcd: EtcdServer, name: str
) -> None:
    cs = start_three(contenders, etcd, name)
    leader = next(c for c in cs if c.leads())
    old_token = leader.last("elected")["token"]  # type: ignore[index]
    t_kill = leader.kill()
    others = [c for c in cs if c is not leader]
    assert wait_until(lambda: any(elected_after(c, t_kill) for c in others), TTL + 5)
    first = min((e for c in others if (e := elected_after(c, t_kill))), key=lambda e: e["t"])
    assert first["t"] - t_kill <= TTL + 2
    assert first["token"] > old_token
    assert sum(c.leads() for c in others) == 1


def test_sigstop_longer_than_ttl_resumes_demoted_and_fenced_off(
    contenders: ContenderFactory, etcd: EtcdServer, name: str
) -> None:
    cs = start_three(contenders, etcd, name)
    leader = next(c for c in cs if c.leads())
    old_token = leader.last("elected")["token"]  # type: ignore[index]
    assert wait_until(lambda: leader.last("act") is not None, 5)  # it has acted in this term
    leader.pause()
    t_stop = clock()
    others = [c for c in cs if c is not leader]
    assert wait_until(lambda: any(elected_after(c, t_stop) for c in others), TTL + 5)
    time.sleep(1)  # paused for ttl + 3 s in all
    t_cont = clock()
    leader.resume()
    assert wait_until(lambda: any(e["ev"] == "demoted" and e["t"] > t_cont for e in leader.events()), 5)
    assert wait_until(lambda: leader.last("resumed") is not None, 5)
    after = [e for e in leader.events() if e["t"] > t_stop + 0.15]
    assert not [e for e in after if e["ev"] == "act"], "acted after the pause"
    demoted = leader.last("demoted")
    assert demoted is not None and demoted["reason"] == "deadline passed" and demoted["token"] == old_token
    resumed = leader.last("resumed")
    assert resumed is not None and resumed["is_leader"] is False
    assert wait_until(lambda: any(e.get("stale") and "error" not in e for e in leader.events()), 5)
    stale = [e for e in leader.events() if e["ev"] == "fenced_write" and e.get("stale")]
    assert all(e["accepted"] is False for e in stale)
    assert any("error" not in e for e in stale)  # etcd answered, and rejected the old term's write
    successor = next(e for c in others if (e := elected_after(c, t_stop)))
    assert successor["token"] > old_token


def test_blackholed_leader_demotes_before_the_server_expires_its_lease(
    contenders: ContenderFactory, etcd: EtcdServer, name: str
) -> None:
    with FaultProxy(etcd.endpoint) as proxy:
        cut = contenders(proxy.endpoint, "--call-timeout", "0.5")
        assert wait_until(cut.leads, 20)
        other = contenders(etcd.endpoint)
        assert wait_until(lambda: queued(etcd, name) == 2, 20)
        old_token = cut.last("elected")["token"]  # type: ignore[index]
        t_cut = clock()
        proxy.set_mode("blackhole")
        assert wait_until(lambda: elected_after(other, t_cut) is not None, TTL + 5)
        demoted = cut.last("demoted")
        successor = elected_after(other, t_cut)
        assert demoted is not None and successor is not None
        assert demoted["reason"] == "deadline passed"
        # the successor can only lead after etcd deleted the old key: strictly after the demotion
        assert demoted["t"] < successor["t"]
        assert demoted["t"] - t_cut < TTL
        proxy.set_mode("pass")
        t_heal = clock()
        time.sleep(TTL + 1)
        # healed, it never resumes the old term: it only queues again behind the successor
        assert not [e for e in cut.events() if e["ev"] == "elected" and e["t"] > t_cut]
        assert wait_until(lambda: queued(etcd, name) == 2, 10)
        assert other.leads()
        assert not [e for e in cut.events() if e["ev"] == "act" and e["t"] > demoted["t"]]
        assert t_heal > demoted["t"]
        assert successor["token"] > old_token


def test_blackhole_with_transport_keepalive_off_still_stops(contenders: ContenderFactory, etcd: EtcdServer) -> None:
    with FaultProxy(etcd.endpoint) as proxy:
        cut = contenders(proxy.endpoint, "--keepalive-time", "0", "--call-timeout", "0.5")
        assert wait_until(cut.leads, 20)
        proxy.set_mode("blackhole")
        # per-call deadlines alone bound every call: the leader demotes at its deadline
        assert wait_until(lambda: cut.last("demoted") is not None, TTL + 2)
        t0 = time.monotonic()
        assert cut.proc is not None
        cut.proc.terminate()
        cut.proc.wait(15)
        assert time.monotonic() - t0 < 10
        assert cut.last("exit") is not None
