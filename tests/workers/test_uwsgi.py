"""Flask under real uWSGI with 2 workers (examples/uwsgi_flask): @postfork and --lazy-apps."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from leaderelect.testing import EtcdServer, wait_until
from tests.workers.servers import (
    BIN,
    EXAMPLES,
    Server,
    assert_failover_on_kill,
    assert_one_leader_among_workers,
    assert_status_agrees,
    queue_pids,
)

UWSGI = shutil.which("uwsgi", path=str(BIN)) or shutil.which("uwsgi")
pytestmark = pytest.mark.skipif(UWSGI is None, reason="uWSGI is not installed (pip install uwsgi needs a C compiler)")
TTL = 2


@pytest.mark.parametrize("mode", ["postfork", "lazy-apps"])
def test_one_worker_leads_and_the_other_takes_over(etcd: EtcdServer, name: str, etcd3_client: Any, mode: str) -> None:
    assert UWSGI is not None
    argv = [UWSGI, "--ini", "uwsgi.ini", "--http-socket", "127.0.0.1:{port}", "--home", str(BIN.parent)]
    if mode == "lazy-apps":
        argv.append("--lazy-apps")
    env = {"ETCD_ENDPOINTS": etcd.endpoint, "ELECTION": name, "ELECTION_TTL": str(TTL)}
    with Server(argv, EXAMPLES / "uwsgi_flask", env) as server:
        leader = assert_one_leader_among_workers(server, etcd3_client, name)
        assert_status_agrees(server, leader)
        assert_failover_on_kill(server, etcd3_client, name, leader, TTL)
        assert_one_leader_among_workers(server, etcd3_client, name)
        server.stop()
    assert wait_until(lambda: queue_pids(etcd3_client, name) == [], 0.5)  # resigned, not expired
