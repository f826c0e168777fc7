"""A true partition: the leader in a network namespace of its own, cut off by iptables DROP.

Root only (namespaces, veth, iptables); skipped with the reason elsewhere. Every address
used lives inside the two namespaces the test creates and deletes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leaderelect import clock
from leaderelect.chaos.checker import check, format_report
from leaderelect.chaos.procs import Contender
from leaderelect.testing import EtcdServer, NetnsPair, netns_unavailable, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or "")]
TTL = 2


@pytest.fixture
def net() -> Iterator[NetnsPair]:
    with NetnsPair() as pair:
        yield pair


def test_partitioned_leader_demotes_before_expiry_and_never_resumes(net: NetnsPair, tmp_path: Path) -> None:
    etcd = EtcdServer(netns=net.server, listen_host=net.server_ip)
    contenders: list[Contender] = []
    try:
        etcd.start()
        common = ["--name", "netns", "--ttl", str(TTL), "--call-timeout", "0.5"]
        victim = Contender(
            str(tmp_path / "c0-1.jsonl"), [*common, "--endpoints", etcd.endpoint], prefix=net.exec_prefix(net.client)
        ).start()
        contenders.append(victim)
        assert wait_until(victim.leads, 20)
        other = Contender(
            str(tmp_path / "c1-1.jsonl"),
            [*common, "--endpoints", f"127.0.0.1:{etcd.client_port}"],
            prefix=net.exec_prefix(net.server),
        ).start()
        contenders.append(other)
        assert wait_until(lambda: other.last("leader_changed") is not None, 20)
        time.sleep(0.5)
        old_token = victim.last("elected")["token"]  # type: ignore[index]
        t_cut = clock()
        net.partition()
        assert wait_until(lambda: any(e["ev"] == "elected" and e["t"] > t_cut for e in other.events()), TTL + 5)
        elected = next(e for e in other.events() if e["ev"] == "elected" and e["t"] > t_cut)
        demoted = victim.last("demoted")
        assert demoted is not None and demoted["reason"] == "deadline passed"
        assert demoted["t"] < elected["t"]  # it demoted before etcd expired its lease
        assert elected["token"] > old_token
        net.heal()
        time.sleep(TTL + 1)
        assert not [e for e in victim.events() if e["ev"] in ("elected", "act") and e["t"] > demoted["t"]]
        assert other.leads()
    finally:
        for contender in contenders:
            contender.stop()
        etcd.close()
    (tmp_path / "run.json").write_text('{"ttl": 2}')
    report = check(tmp_path)
    assert report.ok, format_report(report)
