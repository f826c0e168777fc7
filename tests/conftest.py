"""Fixtures: real etcd servers on loopback, unique election names, electors that are
always stopped, and a check that no leaderelect thread outlives its test."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from leaderelect import LeaderElector
from leaderelect.testing import EtcdCluster, EtcdServer, wait_until

_names = itertools.count()


def leaderelect_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("leaderelect-"))


# The servers come from leaderelect's own pytest plugin (leaderelect/pytest_plugin.py), the one
# users get; these short names are what our tests grew up with.


@pytest.fixture(scope="session")
def etcd(etcd_server: EtcdServer) -> EtcdServer:
    return etcd_server


@pytest.fixture
def fresh_etcd(etcd_own_server: EtcdServer) -> EtcdServer:
    """A server of the test's own, for tests that kill or restart it."""
    return etcd_own_server


@pytest.fixture(scope="module")
def cluster(etcd_cluster: EtcdCluster) -> EtcdCluster:
    return etcd_cluster


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return f"test-{os.getpid()}-{next(_names)}-{request.node.name[:40]}"


ElectorFactory = Callable[..., LeaderElector]


@pytest.fixture
def make_elector(etcd: EtcdServer, name: str) -> Iterator[ElectorFactory]:
    """Builds electors on the session etcd (ttl 2 unless given); stops them all at teardown,
    then asserts that no leaderelect thread is left running."""
    made: list[LeaderElector] = []

    def make(value: str | None = None, **kwargs: Any) -> LeaderElector:
        kwargs.setdefault("endpoints", etcd.endpoint)
        kwargs.setdefault("ttl", 2)
        elector = LeaderElector(kwargs.pop("name", name), value, **kwargs)
        made.append(elector)
        return elector

    before = set(leaderelect_threads())
    yield make
    for elector in made:
        elector.stop()
    assert wait_until(lambda: set(leaderelect_threads()) <= before, 10), leaderelect_threads()


@pytest.fixture
def etcd3_client(etcd: EtcdServer) -> Iterator[Any]:
    """An independent client (python-etcd3) to inspect and break what the library wrote."""
    import etcd3

    host, port = etcd.endpoint.rsplit(":", 1)
    client = etcd3.client(host=host, port=int(port), timeout=5)
    yield client
    client.close()
