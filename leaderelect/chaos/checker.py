"""The safety checker: reads contender histories and fault windows, and says PASS or FAIL.

Properties (docs/reliability.md): S1 no overlapping terms (margin 0, one shared clock); S2 tokens
strictly increase and accepted fenced writes lie inside their terms; S3 acts lie inside
their terms, late acts were fenced off; C1 callback sequences; C2 hygiene after stop; L1
leaderless gaps within bounds; plus what each fault must show.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaderelect.chaos.jsonl import read_jsonl

# faults after which etcd itself was unavailable: gaps are bounded from the heal
OUTAGES = {"quorum_loss", "whole_restart"}
# faults that should cost no leader its term (etcd stays available to every client)
NEEDLESS = {"move_leader", "member_replace", "freeze_member"}
# reasons a term ends on purpose
VOLUNTARY = {"stopped", "resigned", "session closed"}


@dataclass
class TermRec:
    pid: int
    token: int
    start: float
    end: float
    how: str  # demoted / deadline / crashed / open
    last_valid_until: float
    reason: str = ""  # the demotion reason, when it ended by a demotion


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def fail(self, prop: str, message: str) -> None:
        self.violations.append(f"FAIL {prop}: {message}")

    @property
    def ok(self) -> bool:
        return not self.violations


def load(folder: Path) -> tuple[dict[int, list[dict[str, Any]]], list[dict[str, Any]], dict[str, Any]]:
    """Histories by pid, fault windows, and the run's facts (run.json)."""
    by_pid: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(folder.glob("c*.jsonl")):
        for event in read_jsonl(path):
            by_pid[event["pid"]].append(event)
    for events in by_pid.values():
        events.sort(key=lambda e: e["t"])
    faults = []
    faults_path = folder / "faults.jsonl"
    if faults_path.exists():
        faults = read_jsonl(faults_path)
    run_path = folder / "run.json"
    run = json.loads(run_path.read_text()) if run_path.exists() else {}
    return dict(by_pid), faults, run


def terms_of(pid: int, events: list[dict[str, Any]]) -> list[TermRec]:
    """A term runs from its first sign (elected, or an act that checked is_leader earlier)
    to the earliest of demoted, its last known valid_until, and a crash."""
    crashed = [e["t"] for e in events if e["ev"] == "crashed"]
    tokens = [e["token"] for e in events if e["ev"] == "elected"]
    terms = []
    for token in dict.fromkeys(tokens):
        mine = [e for e in events if e.get("token") == token and e["ev"] in ("elected", "act", "demoted")]
        starts = [e["t"] for e in mine if e["ev"] == "elected"]
        starts += [e.get("t_check", e["t"]) for e in mine if e["ev"] == "act"]
        start = min(starts)
        valid = max(e["valid_until"] for e in mine if "valid_until" in e)
        candidates = [(valid, "deadline")]
        candidates += [(e["t"], "demoted") for e in mine if e["ev"] == "demoted"]
        candidates += [(t, "crashed") for t in crashed if t >= start]
        end, how = min(candidates)
        reasons = [e.get("reason", "") for e in mine if e["ev"] == "demoted"]
        terms.append(TermRec(pid, token, start, end, how, valid, reasons[0] if reasons else ""))
    return terms


def check(folder: Path) -> Report:
    histories, faults, run = load(folder)
    report = Report()
    ttl = float(run.get("ttl", 2))
    terms = sorted((t for pid, ev in histories.items() for t in terms_of(pid, ev)), key=lambda t: t.start)
    term_of = {(t.pid, t.token): t for t in terms}
    _s1_overlap(terms, report)
    _s2_tokens_and_writes(terms, term_of, histories, report)
    _s3_acts(term_of, histories, report)
    _c1_callbacks(histories, run, report)
    _c2_hygiene(histories, run, report)
    _l1_gaps(terms, faults + crowd_departures(histories, faults), run, ttl, report)
    _fault_specific(terms, faults, histories, run, ttl, report)
    _needless(terms, faults, ttl, report)
    _s4_resources(folder, run, report)
    report.stats.update(
        terms=len(terms),
        processes=len(histories),
        faults=len(faults),
        faults_by_type=_count(f["fault"] for f in faults),
        fenced_accepted=sum(1 for ev in histories.values() for e in ev if e["ev"] == "fenced_write" and e["accepted"]),
        fenced_rejected=sum(
            1 for ev in histories.values() for e in ev if e["ev"] == "fenced_write" and not e["accepted"]
        ),
    )
    return report


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item] += 1
    return dict(sorted(counts.items()))


def _s1_overlap(terms: list[TermRec], report: Report) -> None:
    latest: TermRec | None = None
    for term in terms:
        if latest is not None and term.start < latest.end:
            report.fail(
                "S1",
                f"term {term.token} of pid {term.pid} starts at {term.start:.6f}, before term {latest.token} "
                f"of pid {latest.pid} ended at {latest.end:.6f} ({latest.how}); overlap "
                f"{(latest.end - term.start) * 1000:.1f} ms",
            )
        if latest is None or term.end > latest.end:
            latest = term


def _s2_tokens_and_writes(
    terms: list[TermRec],
    term_of: dict[tuple[int, int], TermRec],
    histories: dict[int, list[dict[str, Any]]],
    report: Report,
) -> None:
    for before, after in zip(terms, terms[1:]):
        if after.token <= before.token:
            report.fail("S2", f"token {after.token} (pid {after.pid}) follows token {before.token} (pid {before.pid})")
    accepted = sorted(
        (e for ev in histories.values() for e in ev if e["ev"] == "fenced_write" and e["accepted"]),
        key=lambda e: e.get("t_send", e["t"]),
    )
    highest = 0
    for write in accepted:
        term = term_of.get((write["pid"], write["token"]))
        sent = write.get("t_send", write["t"])
        if write.get("stale"):
            # The contender's probe after a pause bypasses the local check on purpose. etcd may
            # accept it while the old key still exists (its lease can outlive the local deadline,
            # e.g. refreshed by a raft leader change) - but never once a newer term has begun.
            newer = [t for t in terms if t.token > write["token"] and t.start < sent]
            if newer:
                report.fail(
                    "S2",
                    f"stale write of pid {write['pid']} token {write['token']} accepted at "
                    f"{sent:.6f}, after term {newer[0].token} began at {newer[0].start:.6f}",
                )
            highest = max(highest, write["token"])
            continue
        if term is None or not term.start <= sent <= term.end:
            report.fail(
                "S2",
                f"accepted fenced write of pid {write['pid']} token {write['token']} sent at "
                f"{sent:.6f}, outside its term",
            )
        if write["token"] < highest:
            report.fail("S2", f"accepted write with token {write['token']} after one with token {highest}")
        highest = max(highest, write["token"])


def _s3_acts(
    term_of: dict[tuple[int, int], TermRec], histories: dict[int, list[dict[str, Any]]], report: Report
) -> None:
    late = 0
    for events in histories.values():
        for i, act in enumerate(events):
            if act["ev"] != "act":
                continue
            term = term_of.get((act["pid"], act["token"]))
            checked = act.get("t_check", act["t"])
            if term is None or not term.start <= checked <= term.end:
                report.fail("S3", f"act of pid {act['pid']} token {act['token']} at {checked:.6f} is outside its term")
            if act["t"] > act["valid_until"]:
                late += 1
                write = next((e for e in events[i + 1 :] if e["ev"] == "fenced_write"), None)
                if write is not None and write["accepted"]:
                    report.fail("S3", f"late act of pid {act['pid']} at {act['t']:.6f} had its fenced write accepted")
    report.stats["late_acts"] = late


def _c1_callbacks(histories: dict[int, list[dict[str, Any]]], run: dict[str, Any], report: Report) -> None:
    for pid, events in histories.items():
        turns = [e for e in events if e["ev"] in ("elected", "demoted")]
        expect = "elected"
        for e in turns:
            if e["ev"] != expect:
                report.fail("C1", f"pid {pid}: {e['ev']} (token {e['token']}) where {expect} was due")
            elif e["ev"] == "demoted" and e["token"] != turns[turns.index(e) - 1]["token"]:
                report.fail("C1", f"pid {pid}: demoted token {e['token']} after elected another")
            expect = "demoted" if e["ev"] == "elected" else "elected"
        ended = {e["ev"] for e in events} & {"exit", "crashed"}
        if "exit" in ended and turns and turns[-1]["ev"] == "elected":
            report.fail("C1", f"pid {pid} exited after stop() without a final demoted")
        tokens = [e["token"] for e in events if e["ev"] == "leader_changed" and e["token"] is not None]
        for a, b in zip(tokens, tokens[1:]):
            if b < a:
                report.fail("C1", f"pid {pid} observed leader token {b} after {a}")
    final = run.get("final_leader")
    if final:
        for pid, events in histories.items():
            alive = [e for e in events if e["ev"] == "start"] and not [
                e for e in events if e["ev"] in ("exit", "crashed") and e["t"] < final["t"]
            ]
            seen = [e for e in events if e["ev"] == "leader_changed" and e["t"] <= final["t"]]
            if alive and seen and seen[-1]["token"] != final["token"]:
                report.fail("C1", f"pid {pid} last observed token {seen[-1]['token']}, not the final {final['token']}")


def _c2_hygiene(histories: dict[int, list[dict[str, Any]]], run: dict[str, Any], report: Report) -> None:
    for pid, events in histories.items():
        for e in events:
            if e["ev"] != "exit":
                continue
            if e.get("threads_left"):
                report.fail("C2", f"pid {pid} left threads after stop(): {e['threads_left']}")
            if e.get("sockets_left"):
                report.fail("C2", f"pid {pid} has sockets open after stop(): {e['sockets_left']}")
        for e in events:
            if e["ev"] == "crowd_exit" and e.get("threads_left"):
                report.fail("C2", f"crowd pid {pid} left threads after stop(): {e['threads_left'][:5]}")
    server = run.get("server_after_stop", {})
    if server.get("keys"):
        report.fail("C2", f"keys left in the election after every contender stopped: {server['keys']}")
    if server.get("live_leases"):
        report.fail("C2", f"leases still alive after stop(): {server['live_leases']}")


def _l1_gaps(
    terms: list[TermRec], faults: list[dict[str, Any]], run: dict[str, Any], ttl: float, report: Report
) -> None:
    if "final_leader" in run and not run["final_leader"]:
        report.fail("L1", "no leader at the end of the run, after every fault healed")
    horizon = (run.get("final_leader") or {}).get("t", float("inf"))
    gaps: dict[str, float] = defaultdict(float)
    covered: float | None = None
    for term in terms:
        if term.start > horizon:
            break
        if covered is not None and term.start > covered:
            a, b = covered, term.start
            near = [f for f in faults if f["start"] <= b and f["end"] >= a - ttl]
            kind = near[-1]["fault"] if near else "none"
            outages = [f for f in near if _is_outage(f)]
            if outages:
                heal = max(f["end"] for f in outages)
                if b - heal > ttl + 3:
                    report.fail(
                        "L1",
                        f"leader only {b - heal:.2f} s after etcd healed at {heal:.3f} "
                        f"(bound ttl + 3 = {ttl + 3:.1f} s)",
                    )
            elif b - a > ttl + 1.5:
                report.fail("L1", f"leaderless for {b - a:.2f} s from {a:.3f} after {kind} (bound {ttl + 1.5:.1f} s)")
            gaps[kind] = max(gaps[kind], b - a)
        covered = term.end if covered is None else max(covered, term.end)
    report.stats["max_gap_by_fault"] = {k: round(v, 3) for k, v in sorted(gaps.items())}


def _s4_resources(folder: Path, run: dict[str, Any], report: Report) -> None:
    """S4: in each resource outside etcd (PostgreSQL, Redis), the tokens of accepted writes,
    in the order the resource applied them, never go down."""
    path = folder / "resources.json"
    if not path.exists():
        if run.get("fences"):
            report.fail("S4", "the run was to write through PostgreSQL and Redis fences, but no log of them exists")
        return
    logs = json.loads(path.read_text())
    for resource, tokens in sorted(logs.items()):
        for i, (a, b) in enumerate(zip(tokens, tokens[1:])):
            if b < a:
                report.fail("S4", f"{resource} accepted token {b} after token {a} (write {i + 2} of {len(tokens)})")
                break
    report.stats["resource_writes"] = {resource: len(tokens) for resource, tokens in sorted(logs.items())}


def _is_outage(fault: dict[str, Any]) -> bool:
    """etcd could not serve writes during this fault: a frozen raft leader too, until the
    others elect a new one (leases are then refreshed to a whole TTL, as after a restart).
    A crowd's departure is judged the same way (see crowd_departures)."""
    return (
        fault["fault"] in OUTAGES
        or fault["fault"] == "crowd_departure"
        or (fault["fault"] == "freeze_member" and bool(fault.get("raft_leader")))
    )


def crowd_departures(histories: dict[int, list[dict[str, Any]]], faults: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The end of each large election: its crowd leaving, a window of its own.

    A thousand electors in five processes shut down at once (on two cores, next to the etcd
    cluster and the contenders): the head of the queue belongs to processes that are
    shutting down, or starving while the others do; the queue drains through them as their
    revokes land. That is a mass failure of candidates, and L1 asks of it what it asks after
    an etcd outage: a leader within ttl + 3 s of its end, the last crowd process's exit.
    The window runs from the moment the crowd was told to go (``departure_start``; runs
    recorded before it was, the fault's end) to that exit (``departure_end``; else the last
    ``crowd_exit`` before the next fault began).
    """
    exits = sorted(e["t"] for events in histories.values() for e in events if e["ev"] == "crowd_exit")
    starts = sorted(f["start"] for f in faults)
    departures = []
    for fault in faults:
        if fault["fault"] != "large_election":
            continue
        start = fault.get("departure_start", fault["end"])
        end = fault.get("departure_end")
        if end is None:
            following = [s for s in starts if s > start]
            until = following[0] if following else float("inf")
            end = max([t for t in exits if start <= t < until], default=start)
        departures.append({"fault": "crowd_departure", "start": start, "end": end})
    return departures


def _fault_specific(
    terms: list[TermRec],
    faults: list[dict[str, Any]],
    histories: dict[int, list[dict[str, Any]]],
    run: dict[str, Any],
    ttl: float,
    report: Report,
) -> None:
    guard = float(run.get("guard", max(0.5, 0.1 * ttl)))
    for f in faults:
        a, b = f["start"], f["end"]
        ended = [t for t in terms if a < t.end < b and t.how != "crashed"]
        started = [t for t in terms if a + 0.05 < t.start < b]
        if f["fault"] == "partition_follower" and (ended or started):
            report.fail("F1", f"leadership changed while only follower pid {f.get('pid')} was cut off at {a:.3f}")
        # A renewal may be due just as writes stop: the worst-case validity left is ttl - guard - ttl/3.
        outage = f.get("write_outage", b - a)
        # 0.1 s: the client's reaction (a failed renewal is retried in steps of up to 0.1 s here)
        if f["fault"] == "member_kill" and outage + 0.1 < ttl - guard - ttl / 3 and ended:
            report.fail(
                "M1",
                f"a {outage:.2f} s write outage at {a:.3f} demoted token {ended[0].token} "
                f"(it fits in ttl - guard - ttl/3 = {ttl - guard - ttl / 3:.2f} s)",
            )
        if f["fault"] in OUTAGES and started:
            report.fail("Q1", f"token {started[0].token} elected during the etcd outage at {a:.3f}")
        # A renewal gets min(call_timeout, ttl/3) (session.py): an RTT within that is healthy.
        budget = min(float(run.get("call_timeout", 1.0)), ttl / 3)
        if f["fault"] == "slow_network" and 2 * f.get("latency", 0) < budget and ended:
            report.fail(
                "N1",
                f"demoted at RTT {2 * f['latency']:.2f} s < renewal budget {budget:.2f} s (token {ended[0].token})",
            )
        bound = run.get("stop_bound", ttl + 4 * 1.0 + 2)  # how long stop() may take
        if f["fault"] == "blackhole_no_keepalive" and (f.get("stop_seconds") is None or f["stop_seconds"] > bound):
            report.fail(
                "K1",
                f"stop() with keepalive off under a blackhole took {f.get('stop_seconds')} s (bound {bound:.1f} s)",
            )
        if f["fault"] == "stop_cut_off":
            if f.get("seconds") is None or f["seconds"] > bound:
                report.fail("W1", f"{f.get('how')}() while cut off took {f.get('seconds')} s (bound {bound:.1f} s)")
            successors = [t for t in terms if t.start > a and t.pid != f.get("pid")]
            if not successors or successors[0].start - a > ttl + 3:
                late = f"{successors[0].start - a:.2f} s" if successors else "never"
                report.fail("W1", f"successor of pid {f.get('pid')} after {f.get('how')}() while cut off: {late}")
        if f["fault"] == "callback_past_deadline" and f.get("pid") in histories:
            events = histories[f["pid"]]
            # only a slow callback of this window counts (an armed contender that did not
            # lead in it carries its slow callback into a later term)
            busy = [e for e in events if e["ev"] == "slow_callback" and a < e["t"] < b]
            lost = [e for e in events if e["ev"] == "lost" and busy and e["t"] > busy[0]["t"]]
            lost = [e for e in lost if e.get("token") == busy[0].get("token")] if busy else []
            if busy and not lost:
                report.fail("D1", f"pid {f['pid']} never saw its term end while its callback ran")
            elif busy and lost[0]["t"] > lost[0]["valid_until"] + 0.5:
                report.fail(
                    "D1",
                    f"pid {f['pid']} still held its term {lost[0]['t'] - lost[0]['valid_until']:.2f} s past its "
                    "deadline while a callback ran",
                )
        if f["fault"] == "pause_leader" and f.get("pid") in histories:
            # a stopped process cannot read the clock: whatever it logs with t > start, it logs
            # after SIGCONT (which can come before the nemesis records the window's end)
            events = histories[f["pid"]]
            turns = [e for e in events if e["t"] < a and e["ev"] in ("elected", "demoted")]
            led = bool(turns) and turns[-1]["ev"] == "elected"  # the nemesis may pick a leader that just fell
            after = [e for e in events if e["t"] > a and e["ev"] in ("elected", "demoted", "act")]
            if led and after and after[0]["ev"] != "demoted":
                report.fail("P1", f"pid {f['pid']} resumed with {after[0]['ev']}, not demoted")


def _needless(terms: list[TermRec], faults: list[dict[str, Any]], ttl: float, report: Report) -> None:
    """Informative (goal 0 at ttl >= 5): terms lost to faults that should cost none, and
    terms so short (under a renewal interval) that they were churn rather than leadership."""
    needless: dict[str, int] = defaultdict(int)
    for f in faults:
        if f["fault"] not in NEEDLESS or (f["fault"] == "freeze_member" and f.get("raft_leader")):
            continue
        a, b = f["start"], f["end"] + ttl
        needless[f["fault"]] += sum(
            1 for t in terms if a < t.end < b and t.how in ("deadline", "demoted") and t.reason not in VOLUNTARY
        )
    report.stats["needless_demotions"] = {k: needless.get(k, 0) for k in sorted(NEEDLESS)}
    report.stats["short_terms"] = sum(
        1 for t in terms if t.end - t.start < ttl / 3 and t.how != "crashed" and t.reason not in VOLUNTARY
    )


def format_report(report: Report) -> str:
    s = report.stats
    lines = [
        f"faults injected: {s.get('faults', 0)}  terms: {s.get('terms', 0)}  processes: {s.get('processes', 0)}",
        f"fenced writes: {s.get('fenced_accepted', 0)} accepted, {s.get('fenced_rejected', 0)} rejected; "
        f"late acts: {s.get('late_acts', 0)}",
        "",
        "| fault | count | max leaderless gap (s) |",
        "|---|---|---|",
    ]
    gaps = s.get("max_gap_by_fault", {})
    for fault, count in s.get("faults_by_type", {}).items():
        lines.append(f"| {fault} | {count} | {gaps.get(fault, '-')} |")
        if fault == "large_election":  # and its crowd leaving, judged as an outage (L1)
            lines.append(f"| (its crowd leaving) | {count} | {gaps.get('crowd_departure', '-')} |")
    needless = s.get("needless_demotions")
    if needless is not None:
        lines += [
            "",
            "| needless demotions (fault should cost no term) | terms lost |",
            "|---|---|",
            *(f"| {fault} | {count} |" for fault, count in needless.items()),
            "",
            f"short involuntary terms (< ttl/3): {s.get('short_terms', 0)}",
        ]
    if s.get("resource_writes"):
        lines += ["", "accepted writes outside etcd: " + ", ".join(f"{k} {v}" for k, v in s["resource_writes"].items())]
    lines.append("")
    lines += report.violations or ["violations: 0"]
    lines.append("PASS" if report.ok else f"FAIL ({len(report.violations)} violations)")
    return "\n".join(lines)
