"""The short deterministic fault schedule on real processes and a real 3-member cluster:
every fault type once, zero violations; and the negative control that must FAIL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from leaderelect.chaos.checker import check, format_report
from leaderelect.chaos.nemesis import FAULTS, Harness, run

pytestmark = [pytest.mark.faults, pytest.mark.cluster]


@pytest.mark.timeout(420)
def test_short_schedule_every_fault_zero_violations(tmp_path: Path) -> None:
    """Every fault once, the contenders writing to PostgreSQL and Redis through the fences."""
    # ttl 3: a raft re-election (~1 s) then fits in the worst-case validity left, so M1 is checked
    # a large election of 100 here (2 processes x 50); `make chaos` uses 1,000
    harness = Harness(tmp_path, contenders=3, ttl=3, seed=1, say=print, crowd=(2, 50))
    run(harness, list(FAULTS), 0)
    report = check(tmp_path)
    print(format_report(report))
    assert report.ok, format_report(report)
    assert report.stats["faults_by_type"] == {fault: 1 for fault in sorted(FAULTS)}
    assert report.stats["terms"] >= 4
    assert report.stats["fenced_accepted"] > 50
    crowd = next(f for f in _windows(tmp_path) if f["fault"] == "large_election")
    assert crowd["joined"] and None not in crowd["crowd_stop_seconds"], crowd
    # Jepsen's case in PostgreSQL: the paused leader's guarded transaction never commits
    paused = next(f for f in _windows(tmp_path) if f["fault"] == "pause_in_transaction")
    assert paused["opened"] and paused["committed"] is False, paused
    assert min(report.stats["resource_writes"].values()) > 20


def test_short_schedule_with_auth_and_tokens_that_expire_every_2_s(tmp_path: Path) -> None:
    """etcd#17623: tokens expire while candidates wait, lead and release. Nothing spins,
    nobody stalls, and every process leaves nothing behind (C2). (No large election here:
    a hundred candidates authenticating at once, each with its own connection, keep etcd
    busy hashing passwords for tens of seconds; see docs/facts.md.)"""
    harness = Harness(tmp_path, contenders=3, ttl=3, seed=2, say=print, auth=True, fences=False)
    faults = ["stop_cut_off", "compaction", "kill9_leader"]
    run(harness, faults, 0)
    report = check(tmp_path)
    print(format_report(report))
    assert report.ok, format_report(report)
    assert report.stats["faults"] == len(faults)


def _windows(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "faults.jsonl").read_text().splitlines() if line.strip()]


def test_unguarded_writes_to_postgres_must_fail(tmp_path: Path) -> None:
    """The negative control of S4: the same pause inside a transaction, without the fence:
    the paused leader commits after its successor's writes, an older token after newer ones."""
    harness = Harness(tmp_path, contenders=2, ttl=2, seed=4, say=print, unguarded=True)
    run(harness, ["pause_in_transaction"], 0)
    report = check(tmp_path)
    print(format_report(report))
    assert any(v.startswith("FAIL S4: postgres") for v in report.violations), report.violations


def test_negative_guard_must_fail(tmp_path: Path) -> None:
    # the leader trusts its lease 3 s past the server's expiry: a partition makes two leaders
    harness = Harness(tmp_path, contenders=2, ttl=2, guard=-3.0, unsafe_guard=True, seed=1, say=print, fences=False)
    run(harness, ["partition_leader"], 0)
    report = check(tmp_path)
    print(format_report(report))
    assert not report.ok
    assert any(v.startswith("FAIL S1") for v in report.violations)
