"""The checker on small histories: each property can say FAIL, and a clean history passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leaderelect.chaos.checker import check, format_report

DATA = Path(__file__).parent / "data"


def write(
    folder: Path,
    histories: dict[int, list[dict[str, Any]]],
    faults: list[dict[str, Any]] = (),  # type: ignore[assignment]
    run: dict[str, Any] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for pid, events in histories.items():
        with open(folder / f"c{pid}-1.jsonl", "w") as fh:
            for event in events:
                fh.write(json.dumps({"pid": pid, **event}) + "\n")
    with open(folder / "faults.jsonl", "w") as fh:
        for fault in faults or []:
            fh.write(json.dumps(fault) + "\n")
    (folder / "run.json").write_text(json.dumps(run or {"ttl": 2}))
    return folder


def term(token: int, start: float, end: float, *, acts: int = 3) -> list[dict[str, Any]]:
    """elected at *start*, acts (each valid for 1 s), demoted at *end*."""
    events: list[dict[str, Any]] = [{"t": start, "ev": "elected", "token": token, "valid_until": start + 1.5}]
    for i in range(acts):
        t = start + (end - start) * (i + 1) / (acts + 1)
        events.append({"t": t, "ev": "act", "token": token, "valid_until": t + 1.0, "t_check": t})
        events.append({"t": t + 0.001, "ev": "fenced_write", "token": token, "accepted": True, "t_send": t})
    events.append({"t": end, "ev": "demoted", "token": token, "reason": "stopped"})
    return events


def test_clean_handoffs_pass(tmp_path: Path) -> None:
    folder = write(tmp_path, {1: term(5, 10.0, 11.0) + term(9, 12.0, 13.0), 2: term(7, 11.002, 11.9)})
    report = check(folder)
    assert report.ok, format_report(report)
    assert report.stats["terms"] == 3
    assert report.stats["fenced_accepted"] == 9


def test_recorded_overlap_fails_s1() -> None:
    # recorded from a real run with the guard made negative through the test-only knob
    report = check(DATA / "overlap")
    assert not report.ok
    assert any(v.startswith("FAIL S1") for v in report.violations)


def test_synthetic_overlap_fails_s1(tmp_path: Path) -> None:
    folder = write(tmp_path, {1: term(5, 10.0, 11.0), 2: term(7, 10.999, 12.0)})
    report = check(folder)
    assert [v for v in report.violations if "S1" in v]


def test_token_going_back_fails_s2(tmp_path: Path) -> None:
    folder = write(tmp_path, {1: term(9, 10.0, 11.0), 2: term(7, 11.5, 12.0)})
    assert any("S2" in v for v in check(folder).violations)


def test_accepted_write_outside_its_term_fails_s2(tmp_path: Path) -> None:
    events = term(5, 10.0, 11.0)
    events.append({"t": 11.5, "ev": "fenced_write", "token": 5, "accepted": True, "t_send": 11.4})
    assert any("S2" in v and "outside its term" in v for v in check(write(tmp_path, {1: events})).violations)


def test_late_act_with_accepted_write_fails_s3(tmp_path: Path) -> None:
    events = term(5, 10.0, 20.0, acts=0)
    events.insert(1, {"t": 12.0, "ev": "act", "token": 5, "valid_until": 11.5, "t_check": 11.0})
    events.insert(2, {"t": 12.1, "ev": "fenced_write", "token": 5, "accepted": True, "t_send": 12.0})
    events[0]["valid_until"] = 30.0
    report = check(write(tmp_path, {1: events}))
    assert any("S3" in v and "late act" in v for v in report.violations)
    assert report.stats["late_acts"] == 1


def test_double_elected_and_missing_final_demotion_fail_c1(tmp_path: Path) -> None:
    events = [*term(5, 10.0, 11.0)[:-1], {"t": 11.5, "ev": "elected", "token": 6, "valid_until": 12.0}]
    events.append({"t": 13.0, "ev": "exit"})
    violations = check(write(tmp_path, {1: events})).violations
    assert any("C1" in v and "where demoted was due" in v for v in violations)
    assert any("C1" in v and "without a final demoted" in v for v in violations)


def test_leftover_threads_and_keys_fail_c2(tmp_path: Path) -> None:
    events = [
        *term(5, 10.0, 11.0),
        {"t": 11.1, "ev": "exit", "threads_left": ["leaderelect-session-x"], "sockets_left": ["socket:[1]"]},
    ]
    run = {"ttl": 2, "server_after_stop": {"keys": ["chaos/abc"], "live_leases": []}}
    violations = check(write(tmp_path, {1: events}, run=run)).violations
    assert sum("C2" in v for v in violations) == 3


def test_long_gap_after_a_crash_fails_l1(tmp_path: Path) -> None:
    first = [*term(5, 10.0, 20.0)[:-1], {"t": 11.0, "ev": "crashed"}]
    faults = [{"fault": "kill9_leader", "start": 11.0, "end": 11.0}]
    folder = write(tmp_path, {1: first, 2: term(7, 16.0, 17.0)}, faults)
    report = check(folder)
    assert any("L1" in v for v in report.violations), format_report(report)
    assert report.stats["max_gap_by_fault"]["kill9_leader"] == 5.0


def test_gap_after_an_outage_is_measured_from_the_heal(tmp_path: Path) -> None:
    faults = [{"fault": "quorum_loss", "start": 11.0, "end": 16.0}]
    folder = write(tmp_path, {1: term(5, 10.0, 11.2), 2: term(7, 18.0, 19.0)}, faults)
    assert check(folder).ok  # 6.8 s leaderless, but leader 2 s after the heal


def _crowd_exit(t: float) -> dict[str, Any]:
    return {"t": t, "ev": "crowd_exit", "stop_seconds": 5.0, "threads_left": []}


def test_a_gap_while_a_crowd_leaves_is_measured_from_its_last_exit(tmp_path: Path) -> None:
    # run 10: the crowd was told to go at 20.0 (the fault's recorded end), its processes
    # exited until 25.5; 5.6 s leaderless from 20.2, a contender led at 25.8
    faults = [{"fault": "large_election", "start": 5.0, "end": 20.0}, {"fault": "gil_hog", "start": 40.0, "end": 41.0}]
    histories = {1: term(5, 10.0, 20.2, acts=20), 2: term(7, 25.8, 27.0), 900: [_crowd_exit(24.0), _crowd_exit(25.5)]}
    report = check(write(tmp_path / "ok", histories, faults))
    assert report.ok, format_report(report)
    assert report.stats["max_gap_by_fault"] == {"crowd_departure": 5.6}
    # a leader only 6 s after the last crowd process left still fails
    late = {**histories, 2: term(7, 31.6, 32.0)}
    report = check(write(tmp_path / "late", late, faults))
    assert any("L1" in v and "healed at 25.500" in v for v in report.violations), format_report(report)
    # the nemesis now records the departure itself
    recorded = [{**faults[0], "end": 25.5, "departure_start": 20.0, "departure_end": 25.5}]
    assert check(write(tmp_path / "recorded", histories, recorded)).ok


def test_no_leader_at_the_end_fails_l1(tmp_path: Path) -> None:
    # a candidate that leads the queue but never takes office blocks the election for good
    folder = write(tmp_path, {1: term(5, 10.0, 11.0)}, run={"ttl": 2, "final_leader": None})
    assert any("L1" in v and "no leader at the end" in v for v in check(folder).violations)


def test_stale_write_accepted_before_any_newer_term_is_allowed(tmp_path: Path) -> None:
    events = term(5, 10.0, 11.0)
    events.append({"t": 11.3, "ev": "fenced_write", "token": 5, "accepted": True, "t_send": 11.2, "stale": True})
    assert check(write(tmp_path, {1: events, 2: term(7, 11.5, 12.0)})).ok


def test_stale_write_accepted_after_a_newer_term_began_fails_s2(tmp_path: Path) -> None:
    events = term(5, 10.0, 11.0)
    events.append({"t": 11.7, "ev": "fenced_write", "token": 5, "accepted": True, "t_send": 11.6, "stale": True})
    violations = check(write(tmp_path, {1: events, 2: term(7, 11.5, 12.0)})).violations
    assert any("S2" in v and "stale write" in v for v in violations)


def test_a_slow_successor_after_stop_while_cut_off_fails_w1(tmp_path: Path) -> None:
    fault = {"fault": "stop_cut_off", "start": 11.0, "end": 16.5, "pid": 1, "how": "stop", "seconds": 1.2}
    ok = write(tmp_path / "ok", {1: term(5, 10.0, 11.0), 2: term(7, 13.0, 14.0)}, [fault])
    assert not [v for v in check(ok).violations if "W1" in v]
    late = write(tmp_path / "late", {1: term(5, 10.0, 11.0), 2: term(7, 16.2, 17.0)}, [fault])  # > ttl + 3
    assert [v for v in check(late).violations if "W1" in v]
    hung = write(tmp_path / "hung", {1: term(5, 10.0, 11.0), 2: term(7, 13.0, 14.0)}, [{**fault, "seconds": None}])
    assert [v for v in check(hung).violations if "W1" in v]


def test_a_term_held_past_its_deadline_while_a_callback_ran_fails_d1(tmp_path: Path) -> None:
    fault = {"fault": "callback_past_deadline", "start": 10.0, "end": 14.0, "pid": 1}
    busy = [{"t": 10.2, "ev": "slow_callback", "token": 5, "seconds": 5}]
    on_time = [{"t": 11.6, "ev": "lost", "token": 5, "valid_until": 11.5}]
    late = [{"t": 12.6, "ev": "lost", "token": 5, "valid_until": 11.5}]
    later = [{"t": 30.0, "ev": "slow_callback", "token": 9, "seconds": 5}]  # armed, led only after the window
    for sub, lost, fails in (("ok", on_time, False), ("late", late, True), ("never", [], True)):
        folder = write(tmp_path / sub, {1: term(5, 10.1, 11.5) + busy + lost}, [fault])
        assert bool([v for v in check(folder).violations if "D1" in v]) == fails, sub
    folder = write(tmp_path / "not-in-window", {1: term(9, 29.0, 31.0) + later}, [fault])
    assert not [v for v in check(folder).violations if "D1" in v]


def test_needless_demotions_are_counted_per_fault(tmp_path: Path) -> None:
    lost = term(5, 10.0, 11.0)
    lost[-1]["reason"] = "deadline passed"
    faults = [
        {"fault": "move_leader", "start": 10.5, "end": 10.9},
        {"fault": "freeze_member", "start": 20.0, "end": 22.0, "raft_leader": False},
    ]
    report = check(write(tmp_path, {1: lost + term(7, 12.0, 21.0)}, faults, {"ttl": 5}))
    assert report.ok, format_report(report)  # informative, never a FAIL
    assert report.stats["needless_demotions"] == {"freeze_member": 0, "member_replace": 0, "move_leader": 1}
    assert "| move_leader | 1 |" in format_report(report)


def test_n1_holds_a_slow_network_to_the_renewal_budget_not_to_ttl_over_3(tmp_path: Path) -> None:
    """A renewal gets min(call_timeout, ttl/3): at ttl 5 with 1 s deadlines an RTT of 1.12 s
    fails every call, so losing the term then is no needless demotion (found in a ttl-5 run)."""
    lost = term(5, 10.0, 11.0)
    lost[-1]["reason"] = "deadline passed"
    run = {"ttl": 5, "call_timeout": 1.0}
    for latency, fails in ((0.45, True), (0.562, False)):  # RTT 0.9 s: within the budget; 1.12 s: not
        fault = {"fault": "slow_network", "start": 10.5, "end": 20.5, "pid": 1, "latency": latency}
        folder = write(tmp_path / str(latency), {1: lost + term(7, 12.0, 21.0)}, [fault], run)
        assert bool([v for v in check(folder).violations if "N1" in v]) == fails, latency
