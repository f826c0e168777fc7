"""Flask under real gunicorn with 2 workers against a real etcd (examples/flask_gunicorn)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from leaderelect.testing import EtcdServer, wait_until
from tests.workers.servers import (
    APPS,
    EXAMPLES,
    Server,
    assert_failover_on_kill,
    assert_one_leader_among_workers,
    assert_status_agrees,
    queue_pids,
)

pytest.importorskip("gunicorn")
pytest.importorskip("flask")
TTL = 2


def gunicorn(etcd: EtcdServer, name: str, *extra: str, env: dict[str, str] | None = None) -> Server:
    argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", "127.0.0.1:{port}", *extra, "app:app"]
    env = {"ETCD_ENDPOINTS": etcd.endpoint, "ELECTION": name, "ELECTION_TTL": str(TTL), **(env or {})}
    return Server(argv, EXAMPLES / "flask_gunicorn", env)


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_one_worker_leads_and_the_other_takes_over(
    etcd: EtcdServer, name: str, etcd3_client: Any, preload: bool
) -> None:
    with gunicorn(etcd, name, *(["--preload"] if preload else [])) as server:
        leader = assert_one_leader_among_workers(server, etcd3_client, name)
        assert_status_agrees(server, leader)
        took = assert_failover_on_kill(server, etcd3_client, name, leader, TTL)
        assert took < TTL + 3
        # gunicorn replaces the killed worker; the new one queues behind the new leader
        assert_one_leader_among_workers(server, etcd3_client, name)
        assert server.stop() == 0
    # worker_exit stopped both electors: they resigned, nothing is left in the election
    assert wait_until(lambda: queue_pids(etcd3_client, name) == [], 0.5)  # resigned, not expired


def test_metrics_in_multiprocess_mode(etcd: EtcdServer, name: str, etcd3_client: Any, tmp_path: Path) -> None:
    with gunicorn(etcd, name, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}) as server:
        leader = assert_one_leader_among_workers(server, etcd3_client, name)

        def sample(metric: str) -> float:
            code, text = server.get("/metrics")
            assert code == 200, server.output()[-4000:]
            found = re.search(rf'^{metric}\{{election="{re.escape(name)}"\}} (\S+)$', text, re.M)
            return float(found.group(1)) if found else -1.0

        assert wait_until(lambda: sample("leaderelect_is_leader") == 1.0, 10), server.get("/metrics")
        assert sample("leaderelect_elections_total") == 1.0
        assert wait_until(lambda: sample("leaderelect_keepalive_seconds_count") >= 1, 5)
        assert_failover_on_kill(server, etcd3_client, name, leader, TTL)
        # the dead worker's gauge is dropped (child_exit), the new leader's counts: still one
        assert wait_until(lambda: sample("leaderelect_elections_total") == 2.0, 10)
        assert wait_until(lambda: sample("leaderelect_is_leader") == 1.0, 10)
        # a worker killed while prometheus_client creates its file leaves it empty for good
        # (prometheus/client_python#1199); the example's /metrics still answers
        (tmp_path / "counter_4194303.db").touch()
        assert sample("leaderelect_elections_total") == 2.0


def test_elector_created_before_fork_fails_clearly_in_the_worker(etcd: EtcdServer, name: str) -> None:
    argv = [sys.executable, "-m", "gunicorn", "-c", str(APPS / "prefork_mistake_conf.py")]
    argv += ["-b", "127.0.0.1:{port}", "prefork_mistake:app"]
    env = {"ETCD_ENDPOINTS": etcd.endpoint, "ELECTION": name}
    with Server(argv, APPS, env) as server:
        # no deadlock: the workers fail to boot with the library's error and gunicorn gives up
        assert wait_until(lambda: server.proc.poll() is not None, 30), server.output()[-3000:]
        out = server.output()
        assert "ElectorStateError" in out and "after fork()" in out, out[-3000:]
        assert "post_fork" in out  # the message names the fix
