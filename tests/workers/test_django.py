"""Django (examples/django_site) under real gunicorn with 2 workers, its management commands,
and the opt-in start from AppConfig.ready()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from leaderelect.testing import EtcdServer, wait_until
from tests.workers.servers import (
    EXAMPLES,
    ROOT,
    Server,
    assert_failover_on_kill,
    assert_one_leader_among_workers,
    assert_status_agrees,
    queue_pids,
)

pytest.importorskip("django")
pytest.importorskip("gunicorn")
TTL = 2
SITE = EXAMPLES / "django_site"


def site_env(etcd: EtcdServer, name: str, start_in_workers: bool) -> dict[str, str]:
    return {
        "ETCD_ENDPOINTS": etcd.endpoint,
        "ELECTION": name,
        "ELECTION_TTL": str(TTL),
        "START_IN_WORKERS": "1" if start_in_workers else "0",
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
    }


def manage(etcd: EtcdServer, name: str, *args: str, start_in_workers: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{SITE}{os.pathsep}{ROOT}", **site_env(etcd, name, start_in_workers)}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=SITE, env=env, capture_output=True, text=True, timeout=60
    )


def test_workers_started_from_ready_one_leads_and_fail_over(etcd: EtcdServer, name: str, etcd3_client: Any) -> None:
    argv = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "mysite.wsgi"]
    with Server(argv, SITE, site_env(etcd, name, True)) as server:
        leader = assert_one_leader_among_workers(server, etcd3_client, name)
        assert_status_agrees(server, leader)
        assert_failover_on_kill(server, etcd3_client, name, leader, TTL)
        assert_one_leader_among_workers(server, etcd3_client, name)
        assert server.stop() == 0
        assert "starting the jobs" in server.output()  # settings' ON_ELECTED ran
    assert wait_until(lambda: queue_pids(etcd3_client, name) == [], 0.5)  # atexit: resigned, not expired


def test_ordinary_commands_do_not_campaign(etcd: EtcdServer, name: str, etcd3_client: Any) -> None:
    probe = "from leaderelect.django import get_elector; print('elector:', get_elector())"
    done = manage(etcd, name, "shell", "-c", probe)
    assert done.returncode == 0, done.stderr
    assert "elector: None" in done.stdout
    assert manage(etcd, name, "check").returncode == 0
    assert queue_pids(etcd3_client, name) == []


def test_bad_settings_fail_at_startup(etcd: EtcdServer, name: str) -> None:
    done = manage(etcd, "", "check")  # NAME empty
    assert done.returncode != 0
    assert 'settings.LEADERELECT must be a dict with at least "NAME"' in done.stderr


def test_management_command_runs_a_dedicated_leader(etcd: EtcdServer, name: str, etcd3_client: Any) -> None:
    env = {**os.environ, "PYTHONPATH": f"{SITE}{os.pathsep}{ROOT}", **site_env(etcd, name, False)}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "leaderelect"], cwd=SITE, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert wait_until(lambda: queue_pids(etcd3_client, name) == [proc.pid], 20)
        line = ""
        while "elected" not in line:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line, "the command ended without being elected"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert queue_pids(etcd3_client, name) == []  # resigned on the way out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
