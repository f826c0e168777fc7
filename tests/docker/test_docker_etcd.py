"""Optional tier: etcd in a container, driven through the docker SDK (pause, unpause, restart).

Runs only where a Docker engine answers and the etcd image is already present (the tests never
pull: their traffic stays on loopback). Otherwise every test is skipped with the reason.
To enable: start an engine, ``docker pull gcr.io/etcd-development/etcd:v3.5.17`` (or set
``LEADERELECT_DOCKER_IMAGE``), then ``make test``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from leaderelect import DemotionReason, LeaderElector
from leaderelect.testing import wait_until
from tests.helpers import Recorder

docker = pytest.importorskip("docker", reason="the docker SDK is not installed (pip install docker)")
IMAGE = os.environ.get("LEADERELECT_DOCKER_IMAGE", "gcr.io/etcd-development/etcd:v3.5.17")
TTL = 2


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    try:
        client = docker.from_env(timeout=5)
        client.ping()
    except docker.errors.DockerException as err:
        pytest.skip(f"no Docker engine reachable: {err}")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        client.close()
        pytest.skip(f"image {IMAGE} is not present and the tests do not pull; docker pull it to run this tier")
    yield client
    client.close()


@pytest.fixture
def etcd_container(engine: Any) -> Iterator[tuple[Any, str]]:
    container = engine.containers.run(
        IMAGE,
        [
            "etcd",
            "--listen-client-urls=http://0.0.0.0:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--data-dir=/tmp/etcd",
        ],
        ports={"2379/tcp": ("127.0.0.1", None)},
        detach=True,
        remove=True,
    )
    try:
        container.reload()
        port = container.ports["2379/tcp"][0]["HostPort"]
        yield container, f"127.0.0.1:{port}"
    finally:
        container.stop(timeout=2)


def test_paused_etcd_demotes_the_leader_before_expiry_and_it_leads_again(
    etcd_container: tuple[Any, str], name: str
) -> None:
    container, endpoint = etcd_container
    elector = LeaderElector(name, endpoints=endpoint, ttl=TTL)
    recorder = Recorder(elector)
    with elector:
        assert elector.wait_elected(30)
        first = elector.term
        assert first is not None
        container.pause()
        t_pause = time.monotonic()
        assert wait_until(lambda: not elector.is_leader, TTL + 1)
        assert time.monotonic() - t_pause < TTL  # demoted on its own deadline, before etcd could expire it
        container.unpause()
        assert elector.wait_elected(TTL + 15)
        second = elector.term
        assert second is not None and second.token > first.token and second.lease_id != first.lease_id
    demotions = [args[1] for _, kind, args in recorder.events if kind == "demoted"]
    assert demotions[0] == DemotionReason.DEADLINE_PASSED


def test_restarted_etcd_container_is_rejoined(etcd_container: tuple[Any, str], name: str) -> None:
    container, endpoint = etcd_container
    with LeaderElector(name, endpoints=endpoint, ttl=TTL) as elector:
        assert elector.wait_elected(30)
        container.restart(timeout=2)
        assert wait_until(lambda: elector.status()["reconnects"] >= 1, 30)
        assert elector.wait_elected(30)
