"""The short deterministic fault schedule on real processes and a real 3-member cluster:
every fault type once, zero violations; and the negative control that must FAIL."""

from __future__ import annotations

from pathlib import Path

import pytest

from leaderelect.chaos.checker import check, format_report
from leaderelect.chaos.nemesis import FAULTS, Harness, run

pytestmark = [pytest.mark.faults, pytest.mark.cluster]


def test_short_schedule_every_fault_zero_violations(tmp_path: Path) -> None:
    # ttl 3: a raft re-election (~1 s) then fits in the worst-case validity left, so M1 is checked
    harness = Harness(tmp_path, contenders=3, ttl=3, seed=1, say=print)
    run(harness, list(FAULTS), 0)
    report = check(tmp_path)
    print(format_report(report))
    assert report.ok, format_report(report)
    assert report.stats["faults_by_type"] == {fault: 1 for fault in sorted(FAULTS)}
    assert report.stats["terms"] >= 4
    assert report.stats["fenced_accepted"] > 50


def test_negative_guard_must_fail(tmp_path: Path) -> None:
    # the leader trusts its lease 3 s past the server's expiry: a partition makes two leaders
    harness = Harness(tmp_path, contenders=2, ttl=2, guard=-3.0, unsafe_guard=True, seed=1, say=print)
    run(harness, ["partition_leader"], 0)
    report = check(tmp_path)
    print(format_report(report))
    assert not report.ok
    assert any(v.startswith("FAIL S1") for v in report.violations)
