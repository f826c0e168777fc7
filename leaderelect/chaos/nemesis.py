"""The nemesis: a 3-member etcd cluster on loopback, contender processes that reach it
through per-contender fault proxies, and the faults of the schedule in docs/reliability.md.

Each fault is recorded as a window ``{fault, start, end, ...}`` in ``faults.jsonl``;
contender histories land beside it, one file per process.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from leaderelect import election
from leaderelect._clock import clock
from leaderelect._config import default_guard, parse_endpoints
from leaderelect._etcd import EtcdClient, prefix_end
from leaderelect.chaos.procs import Contender
from leaderelect.exceptions import EtcdError
from leaderelect.testing import EtcdCluster, FaultProxy, wait_until

NAME = "chaos"
FAULTS = (
    "kill9_leader",
    "pause_leader",
    "partition_leader",
    "partition_follower",
    "member_kill",
    "quorum_loss",
    "whole_restart",
    "slow_network",
    "gil_hog",
    "blackhole_no_keepalive",
    "freeze_member",
    "compaction",
    "move_leader",
    "member_replace",
    "stop_cut_off",
    "callback_past_deadline",
    "large_election",
    "pause_in_transaction",
)
#: how often each fault is drawn in a random run, relative to the others (default 1): a
#: large election spawns a thousand candidates, and is drawn less often
WEIGHTS = {"large_election": 0.5}
USER, PASSWORD = "root", "chaos-pw"


class Slot:
    """A contender position: its proxies (one per etcd member) and its current process."""

    def __init__(self, index: int, proxies: list[FaultProxy], keepalive_off: bool) -> None:
        self.index = index
        self.proxies = proxies
        self.keepalive_off = keepalive_off
        self.contender: Contender | None = None
        self.generation = 0

    def set_network(self, mode: str, latency: float = 0.0) -> None:
        for proxy in self.proxies:
            proxy.set_mode(mode, latency)


class Harness:
    """Runs contenders against a cluster and injects faults; ``close()`` cleans up everything."""

    def __init__(
        self,
        out: Path,
        *,
        contenders: int = 3,
        ttl: int = 2,
        guard: float | None = None,
        unsafe_guard: bool = False,
        seed: int = 0,
        say: Callable[[str], None] = print,
        auth: bool = False,
        crowd: tuple[int, int] = (5, 200),
        fences: bool = True,
        unguarded: bool = False,
    ) -> None:
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self.guard = guard
        self.unsafe_guard = unsafe_guard
        self.random = random.Random(seed)
        self.say = say
        self.n = contenders
        self.call_timeout = 1.0
        #: the whole run with etcd auth on, tokens expiring after 2 s idle (etcd#17623)
        self.auth = auth
        #: the large election: (processes, candidates per process)
        self.crowd = crowd
        #: contenders also write to PostgreSQL and Redis, through their fences (unless
        #: *unguarded*: the negative control)
        self.fences = fences
        self.unguarded = unguarded
        self.servers: Any = None
        self.cluster = EtcdCluster(3, extra_args=["--auth-token-ttl", "2"] if auth else [])
        self.slots: list[Slot] = []
        self.client: EtcdClient | None = None
        self._faults = open(out / "faults.jsonl", "a", buffering=1)  # noqa: SIM115 - closed in close()
        self._latency_step = 0
        self._freeze_step = 0
        self._stop_step = 0
        self._crowd_runs = 0

    # -- setup and teardown -----------------------------------------------------------------

    def _credentials(self) -> list[str]:
        return ["--user", USER, "--password", PASSWORD] if self.auth else []

    def _client(self, call_timeout: float = 1.0) -> EtcdClient:
        user, password = (USER, PASSWORD) if self.auth else (None, None)
        endpoints = parse_endpoints(self.cluster.endpoints)[0]
        return EtcdClient(endpoints, call_timeout=call_timeout, keepalive_time=None, user=user, password=password)

    def start(self) -> None:
        if self.fences:
            try:
                from leaderelect.chaos.resources import Servers

                self.servers = Servers()
                self.servers.start()
            except (ImportError, FileNotFoundError) as err:
                self.say(f"  no PostgreSQL/Redis fences in this run: {err}")
                self.servers = None
        self.cluster.start()
        if self.auth:
            self.cluster.enable_auth(USER, PASSWORD)
        self.client = self._client()
        members = self.cluster.members
        for i in range(self.n):
            # each contender starts on another member: a member's fault reaches some, not all
            proxies = [FaultProxy(m.endpoint) for m in members[i % 3 :] + members[: i % 3]]
            # the first slot runs without gRPC keepalive, for the blackhole_no_keepalive fault
            self.slots.append(Slot(i, proxies, keepalive_off=(i == 0)))
        for slot in self.slots:
            self._launch(slot)
        self.settle(30)

    def _launch(self, slot: Slot) -> None:
        slot.generation += 1
        history = str(self.out / f"c{slot.index}-{slot.generation}.jsonl")
        args = [
            "--name",
            NAME,
            "--endpoints",
            ",".join(p.endpoint for p in slot.proxies),
            "--ttl",
            str(self.ttl),
            "--call-timeout",
            str(self.call_timeout),
        ]
        if slot.keepalive_off:
            args += ["--keepalive-time", "0"]
        if self.guard is not None:
            args += ["--guard", str(self.guard)]
        if self.unsafe_guard:
            args += ["--unsafe-guard"]
        args += ["--slow-callback", str(self.ttl + 3), *self._credentials()]
        if self.servers is not None:
            args += ["--pg", self.servers.postgres.dsn, "--redis", self.servers.redis.url]
            if self.unguarded:
                args += ["--unguarded"]
        slot.contender = Contender(history, args).start()

    def finish(self) -> dict[str, Any]:
        """Quiesce, record the final leader, stop every contender, check the server is clean."""
        for slot in self.slots:
            slot.set_network("pass")
            if slot.contender is None or not slot.contender.alive:
                self._launch(slot)
        leader = self.settle(30)
        time.sleep(2)
        final = None
        if leader is not None:
            current = self._etcd_leader()
            if current is not None:
                final = {"t": clock(), "token": current.token}
        for slot in self.slots:
            if slot.contender is not None and slot.contender.alive:
                slot.contender.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for slot in self.slots:
            if slot.contender is not None:
                slot.contender.stop(30)
        server = self._server_after_stop()
        guard = self.guard if self.guard is not None else default_guard(self.ttl)
        run = {
            "ttl": self.ttl,
            "guard": guard,
            "call_timeout": self.call_timeout,
            "contenders": self.n,
            "final_leader": final,
            "server_after_stop": server,
            "stop_bound": self.ttl + 4 * self.call_timeout + 2 + 2,
            "fences": self.fences,
        }
        (self.out / "run.json").write_text(json.dumps(run, indent=1))
        if self.servers is not None:
            self.servers.dump(self.out / "resources.json")
        return run

    def _server_after_stop(self) -> dict[str, Any]:
        assert self.client is not None
        pfx = election.prefix(NAME)
        leases: set[int] = set()
        for path in self.out.glob("c*.jsonl"):
            for line in path.read_text().splitlines():
                event = json.loads(line)
                if event["ev"] == "exit":
                    leases.update(event.get("leases", []))
        # keys of crashed processes expire with their leases: wait a TTL for them
        deadline = clock() + self.ttl + 3
        keys: list[str] = []
        while clock() < deadline:
            try:
                keys = [kv.key.decode() for kv in self.client.range(pfx, prefix_end(pfx)).kvs]
            except EtcdError:
                keys = ["<etcd unreachable>"]
            if not keys:
                break
            time.sleep(0.2)
        live = []
        for lease_id in sorted(leases):
            try:
                if self.client.lease_time_to_live(lease_id) > 0:
                    live.append(lease_id)
            except EtcdError:
                pass
        return {"keys": keys, "live_leases": live, "leases_checked": len(leases)}

    def close(self) -> None:
        for slot in self.slots:
            if slot.contender is not None and slot.contender.alive:
                slot.contender.stop(10)
            for proxy in slot.proxies:
                proxy.close()
        if self.client is not None:
            self.client.close()
        self.cluster.close()
        if self.servers is not None:
            self.servers.close()
        self._faults.close()

    # -- observing ---------------------------------------------------------------------------

    def _etcd_leader(self) -> election.Candidate | None:
        assert self.client is not None
        try:
            return election.leader(self.client, NAME)
        except EtcdError:
            return None

    def leader_slot(self) -> Slot | None:
        """The slot whose process holds the leader key and knows it (per its history)."""
        current = self._etcd_leader()
        if current is None:
            return None
        for slot in self.slots:
            c = slot.contender
            if c is not None and c.alive and current.value == f"pid-{c.pid}" and c.leads():
                return slot
        return None

    def settle(self, timeout: float) -> Slot | None:
        """Wait until one contender has led, unchanged, for a whole ttl: the previous fault's
        after-effects (a lease that ran out during an etcd outage) are over by then, so the
        next fault's window only shows what that fault caused."""
        stable: list[tuple[int, float]] = []  # (pid, since)
        found: list[Slot] = []

        def steady() -> bool:
            slot = self.leader_slot()
            if slot is None or slot.contender is None:
                stable.clear()
                return False
            pid = slot.contender.pid
            if not stable or stable[0][0] != pid:
                stable[:] = [(pid, clock())]
            found[:] = [slot]
            return clock() - stable[0][1] >= self.ttl

        if not wait_until(steady, timeout, interval=0.05):
            self.say(f"  no steady leader within {timeout} s")
            return found[-1] if found else None
        return found[-1]

    def record(self, fault: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
        window = {"fault": fault, "start": start, "end": end, **extra}
        self._faults.write(json.dumps(window) + "\n")
        self.say(f"  {fault:24} {end - start:6.2f} s  {json.dumps(extra)}")
        return window

    # -- faults --------------------------------------------------------------------------------

    def inject(self, fault: str) -> dict[str, Any] | None:
        leader = self.settle(30)
        if leader is None or leader.contender is None:
            return None
        method: Callable[[Slot], dict[str, Any]] = getattr(self, f"_{fault}")
        return method(leader)

    def _kill9_leader(self, leader: Slot) -> dict[str, Any]:
        assert leader.contender is not None
        pid = leader.contender.pid
        t = leader.contender.kill()
        window = self.record("kill9_leader", t, t, pid=pid)
        self.settle(self.ttl + 10)
        self._launch(leader)  # restarted: it must get a higher token, never the old term
        return window

    def _pause_leader(self, leader: Slot) -> dict[str, Any]:
        assert leader.contender is not None
        leader.contender.pause()
        start = clock()
        time.sleep(self.ttl + 3)
        leader.contender.resume()
        return self.record("pause_leader", start, clock(), pid=leader.contender.pid)

    def _partition(self, fault: str, slot: Slot) -> dict[str, Any]:
        assert slot.contender is not None
        slot.set_network("blackhole")
        start = clock()
        time.sleep(2 * self.ttl)
        slot.set_network("pass")
        return self.record(fault, start, clock(), pid=slot.contender.pid)

    def _partition_leader(self, leader: Slot) -> dict[str, Any]:
        return self._partition("partition_leader", leader)

    def _partition_follower(self, leader: Slot) -> dict[str, Any]:
        followers = [s for s in self.slots if s is not leader and s.contender is not None and s.contender.alive]
        return self._partition("partition_follower", self.random.choice(followers))

    def _member_kill(self, leader: Slot) -> dict[str, Any]:
        member = self.cluster.leader()
        probe = _WriteProbe(self._client(call_timeout=0.2))
        member.kill()
        start = clock()
        time.sleep(1.0)
        member.start()
        outage = probe.stop()
        return self.record("member_kill", start, clock(), member=member.name, write_outage=outage)

    def _quorum_loss(self, leader: Slot) -> dict[str, Any]:
        raft = self.cluster.leader()
        others = [m for m in self.cluster.members if m is not raft]
        victims = [raft, self.random.choice(others)]
        for member in victims:
            member.kill()
        start = clock()
        time.sleep(2 * self.ttl)
        for member in victims:
            member.launch()
        healed = clock()  # quorum can return from here on
        window = self.record("quorum_loss", start, healed, members=[m.name for m in victims])
        for member in victims:
            member.wait_ready(60)
        return window

    def _whole_restart(self, leader: Slot) -> dict[str, Any]:
        for member in self.cluster.members:
            member.kill()
        start = clock()
        time.sleep(0.5)
        for member in self.cluster.members:
            member.launch()
        window = self.record("whole_restart", start, clock())
        for member in self.cluster.members:
            member.wait_ready(60)
        return window

    def _slow_network(self, leader: Slot) -> dict[str, Any]:
        assert leader.contender is not None
        guard = self.guard if self.guard is not None else default_guard(self.ttl)
        top = max(0.01, (self.ttl - guard) / 2)
        steps = [top * f for f in (0.1, 0.25, 0.4, 0.6, 0.8, 1.0)]
        latency = steps[self._latency_step % len(steps)]
        self._latency_step += 1
        leader.set_network("pass", latency)
        start = clock()
        time.sleep(2 * self.ttl)
        leader.set_network("pass", 0.0)
        return self.record("slow_network", start, clock(), pid=leader.contender.pid, latency=round(latency, 3))

    def _gil_hog(self, leader: Slot) -> dict[str, Any]:
        assert leader.contender is not None and leader.contender.proc is not None
        leader.contender.proc.send_signal(signal.SIGUSR2)
        start = clock()
        time.sleep(3.5)
        return self.record("gil_hog", start, clock(), pid=leader.contender.pid)

    def _blackhole_no_keepalive(self, leader: Slot) -> dict[str, Any]:
        victim = self.slots[0]
        assert victim.keepalive_off and victim.contender is not None and victim.contender.proc is not None
        victim.set_network("blackhole")
        start = clock()
        time.sleep(self.ttl + 0.5)
        t_stop = clock()
        victim.contender.proc.send_signal(signal.SIGTERM)
        stop_seconds: float | None
        try:
            victim.contender.proc.wait(30)
            stop_seconds = clock() - t_stop
        except Exception:
            victim.contender.kill()
            stop_seconds = None
        victim.set_network("pass")
        window = self.record(
            "blackhole_no_keepalive",
            start,
            clock(),
            pid=victim.contender.pid,
            was_leader=victim is leader,
            stop_seconds=round(stop_seconds, 3) if stop_seconds is not None else None,
        )
        self._launch(victim)
        return window

    # -- faults that broke peers in the field ------------------------------------------------

    def _freeze_member(self, leader: Slot) -> dict[str, Any]:
        """SIGSTOP one member past raft's election timeout (1 s): every other time the raft
        leader, else another (etcd#14641: clients must leave it, campaigns must not hang).
        The first is not the raft leader: on etcd before 3.5.8 a frozen raft leader may revoke
        live leases when it resumes (etcd#15247), which the short schedule must not hinge on."""
        raft = self.cluster.leader()
        self._freeze_step += 1
        others = [m for m in self.cluster.members if m is not raft]
        member = raft if self._freeze_step % 2 == 0 else self.random.choice(others)
        member.pause()
        start = clock()
        time.sleep(max(2.5, self.ttl / 2))
        member.resume()
        return self.record("freeze_member", start, clock(), member=member.name, raft_leader=member is raft)

    def _compaction(self, leader: Slot) -> dict[str, Any]:
        """Compact (physically) at the current revision, again and again, while leadership
        changes hands and a follower's watches reconnect (etcd#21128)."""
        assert leader.contender is not None and leader.contender.proc is not None
        followers = [s for s in self.slots if s is not leader and s.contender is not None and s.contender.alive]
        reconnecting = self.random.choice(followers)
        start = clock()
        leader.contender.proc.send_signal(signal.SIGHUP)  # resign: a leadership change
        compactions = 0
        for i in range(8):
            if i == 2:
                reconnecting.set_network("reset")  # its watch stream breaks and resyncs
            if i == 3:
                reconnecting.set_network("pass")
            try:
                self.cluster.compact()
                compactions += 1
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                self.say(f"  compaction failed: {err}")
            time.sleep(0.1)
        return self.record("compaction", start, clock(), pid=leader.contender.pid, compactions=compactions)

    def _raft_and_another(self) -> tuple[Any, Any]:
        """The raft leader member, and one other member picked at random."""
        raft = self.cluster.leader()
        return raft, self.random.choice([m for m in self.cluster.members if m is not raft])

    def _move_leader(self, leader: Slot) -> dict[str, Any]:
        """Transfer raft leadership: leases are refreshed, nobody should lose a term."""
        raft, target = self._raft_and_another()
        start = clock()
        try:
            self.cluster.move_leader(target)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            self.say(f"  move-leader failed: {err}")
        time.sleep(0.5)
        return self.record("move_leader", start, clock(), member=target.name, was=raft.name)

    def _member_replace(self, leader: Slot) -> dict[str, Any]:
        """Remove a member that is not raft leader, wipe it, add it back fresh (etcd#14096)."""
        _, member = self._raft_and_another()
        start = clock()
        try:
            self.cluster.replace(member)
            done = True
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as err:
            self.say(f"  member replacement failed: {err}")
            done = False
        return self.record("member_replace", start, clock(), member=member.name, done=done)

    def _stop_cut_off(self, leader: Slot) -> dict[str, Any]:
        """stop() or resign() (in turn) while the leader's connections are blackholed
        (etcd#22123): it returns within its bound and a successor leads within ttl + 3 s."""
        assert leader.contender is not None and leader.contender.proc is not None
        contender, proc = leader.contender, leader.contender.proc
        self._stop_step += 1
        how = "stop" if self._stop_step % 2 else "resign"
        leader.set_network("blackhole")
        time.sleep(0.2)
        start = clock()
        proc.send_signal(signal.SIGTERM if how == "stop" else signal.SIGHUP)
        seconds: float | None = None
        if how == "stop":
            try:
                proc.wait(self.ttl + 4 * self.call_timeout + 10)
                exit_event = contender.last("exit")
                seconds = exit_event["stop_seconds"] if exit_event else None
            except subprocess.TimeoutExpired:
                contender.kill()
        else:
            wait_until(lambda: (contender.last("resign") or {}).get("t", 0) > start, 30)
            resigned = contender.last("resign")
            seconds = resigned["seconds"] if resigned and resigned["t"] > start else None
        # the successor: another contender's term within ttl + 3 s (checked by W1)
        wait_until(lambda: self.leader_slot() not in (None, leader), self.ttl + 5)
        leader.set_network("pass")
        window = self.record("stop_cut_off", start, clock(), pid=contender.pid, how=how, seconds=seconds)
        if how == "stop":
            self._launch(leader)
        return window

    def _callback_past_deadline(self, leader: Slot) -> dict[str, Any]:
        """The next leader's on_elected keeps working past its term: it is cut off while the
        callback runs; its demotion must still come at its deadline."""
        assert leader.contender is not None and leader.contender.proc is not None
        assert self.client is not None
        queue = election.participants(self.client, NAME)[0]
        second = queue[1].value if len(queue) > 1 else None
        successor = next((s for s in self.slots if s.contender and second == f"pid-{s.contender.pid}"), None)
        if successor is None or successor.contender is None or successor.contender.proc is None:
            return self.record("callback_past_deadline", clock(), clock(), skipped="no successor in line")
        successor.contender.proc.send_signal(signal.SIGWINCH)  # arm its next on_elected
        time.sleep(0.1)
        start = clock()
        leader.contender.proc.send_signal(signal.SIGHUP)
        victim = successor.contender
        wait_until(lambda: victim.last("slow_callback") is not None, 10)
        successor.set_network("blackhole")
        time.sleep(2 * self.ttl)
        successor.set_network("pass")
        return self.record("callback_past_deadline", start, clock(), pid=victim.pid)

    def _large_election(self, leader: Slot) -> dict[str, Any]:
        """A thousand candidates (processes x per process) queue behind the contenders; the
        leader is killed, then the next one resigns. The crowd leaves at the end."""
        assert leader.contender is not None and self.client is not None
        procs, per = self.crowd
        self._crowd_runs += 1
        crowd = [
            Contender(
                str(self.out / f"c-crowd{self._crowd_runs}-{k}.jsonl"),
                ["--name", NAME, "--endpoints", self.cluster.endpoints, "--count", str(per), *self._credentials()],
                module="leaderelect.chaos.crowd",
            ).start()
            for k in range(procs)
        ]
        start = clock()
        joined = wait_until(lambda: len(self._candidates()) >= procs * per + self.n, 120, interval=0.5)
        join_seconds = clock() - start
        t_kill = clock()
        pid = leader.contender.pid
        leader.contender.kill()
        self.settle(self.ttl + 10)
        self._launch(leader)
        current = self.settle(self.ttl + 10)
        if current is not None and current.contender is not None and current.contender.proc is not None:
            current.contender.proc.send_signal(signal.SIGHUP)
            self.settle(self.ttl + 10)
        departure_start = clock()
        for member in crowd:
            assert member.proc is not None
            member.proc.send_signal(signal.SIGTERM)
        stop_seconds = []
        for member in crowd:
            member.stop(60)
            exit_event = member.last("crowd_exit")
            stop_seconds.append(exit_event["stop_seconds"] if exit_event else None)
        orphans = self._revoke_crowd_orphans()
        # The window ends once the crowd has left: its departure is part of the fault (it was
        # recorded as ending when the crowd was told to go, so gaps while a thousand electors
        # shut down were counted after the fault).
        departure_end = clock()
        return self.record(
            "large_election",
            t_kill,
            departure_end,
            departure_start=round(departure_start, 6),
            departure_end=round(departure_end, 6),
            pid=pid,
            candidates=procs * per,
            joined=joined,
            join_seconds=round(join_seconds, 1),
            crowd_stop_seconds=stop_seconds,
            crowd_rss_mb=[(m.last("crowd_exit") or {}).get("max_rss_mb") for m in crowd],
            orphans_revoked=orphans,
        )

    def _revoke_crowd_orphans(self) -> int:
        """Revoke the leases of crowd candidates whose process is gone, as an operator would.

        A thousand electors stopping at once on two cores: some revokes miss their deadline
        (stop() is bounded), so their keys stay for the lease's TTL (30 s for the crowd), and
        every raft election refreshes them to a full TTL again. Left in the queue, those dead
        candidates lead for that long after the next contender failure; the next faults
        must start from a clean queue. How many were left is recorded (orphans_revoked)."""
        assert self.client is not None
        revoked: set[int] = set()
        deadline = clock() + 60
        while clock() < deadline:
            left = [c for c in self._candidates() if c.value.startswith("crowd-")]
            if not left:
                break
            for candidate in left:
                try:
                    self.client.lease_revoke(candidate.lease_id, timeout=5.0)
                    revoked.add(candidate.lease_id)
                except EtcdError:
                    pass  # expired meanwhile, or etcd busy: looked at again
            time.sleep(0.5)
        return len(revoked)

    def _pause_in_transaction(self, leader: Slot) -> dict[str, Any]:
        """Jepsen's case, in PostgreSQL: the leader opens a guarded transaction, writes, and is
        paused (SIGSTOP) past its TTL; a successor writes; then SIGCONT, and it commits."""
        contender = leader.contender
        assert contender is not None and contender.proc is not None
        if self.servers is None:
            return self.record("pause_in_transaction", clock(), clock(), skipped="no PostgreSQL")
        start = clock()
        contender.proc.send_signal(signal.SIGURG)
        opened = wait_until(lambda: (contender.last("txn_open") or {}).get("t", 0) > start, 5, interval=0.005)
        contender.pause()
        time.sleep(self.ttl + 3)
        contender.resume()
        wait_until(lambda: (contender.last("txn_commit") or {}).get("t", 0) > start, 10)
        commit = contender.last("txn_commit") or {}
        return self.record(
            "pause_in_transaction",
            start,
            clock(),
            pid=contender.pid,
            opened=opened,
            committed=commit.get("accepted") if commit.get("t", 0) > start else None,
        )

    def _candidates(self) -> list[election.Candidate]:
        assert self.client is not None
        try:
            return election.participants(self.client, NAME)[0]
        except EtcdError:
            return []


class _WriteProbe:
    """Writes to the cluster every 50 ms on its own thread; measures how long writes failed."""

    def __init__(self, client: EtcdClient) -> None:
        self._client = client
        self._stop = threading.Event()
        self._failed: list[float] = []
        self._thread = threading.Thread(target=self._run, name="chaos-write-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            t = clock()
            try:
                self._client.put(b"chaos-probe", b"x")
            except EtcdError:
                self._failed.append(t)

    def stop(self) -> float:
        """Seconds from the first to the last failed write (plus one probe interval)."""
        self._stop.set()
        self._thread.join(5)
        self._client.close()
        return round(self._failed[-1] - self._failed[0] + 0.05, 3) if self._failed else 0.0


def run(harness: Harness, schedule: list[str] | None, duration: float) -> None:
    """Inject *schedule* in order, or random faults until *duration* seconds passed."""
    try:
        harness.start()
        if schedule is not None:
            for fault in schedule:
                harness.inject(fault)
        else:
            end = clock() + duration
            weights = [WEIGHTS.get(fault, 1.0) for fault in FAULTS]
            while clock() < end:
                harness.inject(harness.random.choices(FAULTS, weights)[0])
        harness.finish()
    finally:
        harness.close()
