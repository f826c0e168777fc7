"""The pytest plugin users get: a test file of a user's, run by a separate pytest."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
from leaderelect import LeaderElector


def test_leader_cut_off_demotes_and_the_other_leads(etcd_server, etcd_fault_proxy):
    proxy = etcd_fault_proxy()
    a = LeaderElector("jobs", "a", endpoints=proxy.endpoint, ttl=2)
    b = LeaderElector("jobs", "b", endpoints=etcd_server.endpoint, ttl=2)
    with a:
        assert a.wait_elected(5)
        with b:
            proxy.set_mode("blackhole")
            assert b.wait_elected(10)
            assert not a.is_leader


def test_cluster_member_loss(etcd_cluster):
    with LeaderElector("jobs", "c", endpoints=etcd_cluster.endpoints, ttl=2) as c:
        assert c.wait_elected(5)
        etcd_cluster.leader().kill()
        assert c.wait_elected(10)


def test_own_server_can_be_restarted(etcd_own_server):
    with LeaderElector("jobs", "d", endpoints=etcd_own_server.endpoint, ttl=2) as d:
        assert d.wait_elected(5)
        etcd_own_server.restart()
        assert d.wait_elected(15)
"""


def test_users_fixtures_run_real_etcd_and_faults(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3)


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="def test_x(etcd_server):\n    pass\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:leaderelect", timeout=60)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'etcd_server' not found*"])
