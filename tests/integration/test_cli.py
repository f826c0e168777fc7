"""The command line against a real etcd: run, status, observe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from leaderelect.testing import EtcdServer, wait_until
from tests.conftest import ElectorFactory

# A command that spawns a grandchild ignoring SIGTERM, then records both pids.
FAMILY = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
    with open(sys.argv[1], "a") as fh:
        fh.write(f"{os.getpid()} {grandchild.pid}\\n")
    time.sleep(300)
    """
)


def cli(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "leaderelect", *args],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def family_pids(path: Path) -> list[list[int]]:
    if not path.exists():
        return []
    return [[int(p) for p in line.split()] for line in path.read_text().splitlines() if line.strip()]


def test_run_stops_the_whole_group_on_demotion(etcd: EtcdServer, name: str, tmp_path: Path, etcd3_client: Any) -> None:
    pids = tmp_path / "pids"
    proc = cli(
        "run",
        name,
        "--endpoints",
        etcd.endpoint,
        "--ttl",
        "2",
        "--grace",
        "1",
        "--",
        sys.executable,
        "-c",
        FAMILY,
        str(pids),
    )
    try:
        assert wait_until(lambda: len(family_pids(pids)) == 1, 20)
        child, grandchild = family_pids(pids)[0]
        assert alive(child) and alive(grandchild)
        # demote it: revoke its lease from another client
        lease = next(iter(etcd3_client.get_prefix(f"{name}/")))[1].lease_id
        etcd3_client.revoke_lease(lease)
        assert wait_until(lambda: not alive(child) and not alive(grandchild), 10), "a process outlived demotion"
        # it campaigns again, wins with a new lease, and starts the command anew
        assert wait_until(lambda: len(family_pids(pids)) == 2, 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    for child, grandchild in family_pids(pids):
        assert not alive(child) and not alive(grandchild)
    assert proc.returncode == 128 + signal.SIGTERM


def test_run_exits_with_the_commands_exit_code(etcd: EtcdServer, name: str) -> None:
    proc = cli("run", name, "--endpoints", etcd.endpoint, "--ttl", "2", "--", "sh", "-c", "exit 7")
    assert proc.wait(30) == 7


def test_run_without_a_command_is_an_error(etcd: EtcdServer, name: str) -> None:
    proc = cli("run", name, "--endpoints", etcd.endpoint)
    assert proc.wait(30) == 2
    assert proc.stderr is not None and "give the command" in proc.stderr.read()


def test_status_exit_codes_and_queue(make_elector: ElectorFactory, etcd: EtcdServer, name: str) -> None:
    empty = cli("status", name, "--endpoints", etcd.endpoint)
    assert empty.wait(30) == 3
    a = make_elector("alpha").start()
    assert a.wait_elected(10)
    make_elector("bravo").start()
    assert wait_until(lambda: len(a.participants()) == 2, 10)
    proc = cli("status", name, "--endpoints", etcd.endpoint)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    lines = out.splitlines()
    assert "leader 'alpha'" in lines[0] and "2. 'bravo'" in lines[1]


def test_observe_json_prints_leader_changes(make_elector: ElectorFactory, etcd: EtcdServer, name: str) -> None:
    proc = cli("observe", name, "--endpoints", etcd.endpoint, "--json")
    try:
        time.sleep(1)
        a = make_elector("alpha").start()
        assert a.wait_elected(10)
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["leader"] == "alpha":
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_friendly_error_for_a_bad_name(etcd: EtcdServer) -> None:
    proc = cli("status", "bad/", "--endpoints", etcd.endpoint)
    assert proc.wait(30) == 2
    assert proc.stderr is not None and "must not end with '/'" in proc.stderr.read()
    assert "Traceback" not in (proc.stdout.read() if proc.stdout else "")


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["status", "--help"], ["observe", "--help"]])
def test_help_everywhere(args: list[str]) -> None:
    proc = cli(*args)
    assert proc.wait(30) == 0
