"""``make bench``: leaderelect beside etcd's floor and `etcdctl elect`, on the same etcd, in one run.

Benchmarks assert nothing; they report (bench/RESULTS.md and bench/results.json).
``QUICK=1`` runs fewer trials. Every time is on ``leaderelect.clock()``, the host-wide clock
of the deadlines. Graceful
handoffs are timed the same way for every implementation, in this process: from the moment
it asks the leader to step down (writes the command to its stdin, or sends SIGINT) to the
arrival of the successor's "elected" line on its stdout pipe (stamped by a thread blocked
reading that pipe, no polling). Other times are read by the process where the event happened.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import __version__ as protobuf_version

import leaderelect
from leaderelect import clock
from leaderelect._config import parse_endpoints
from leaderelect._etcd import EtcdClient, pb, prefix_end
from leaderelect.election import participants
from leaderelect.testing import EtcdServer, FaultProxy, find_etcd, wait_until

HERE = Path(__file__).parent
QUICK = os.environ.get("QUICK") == "1"


def n(full: int, quick: int) -> int:
    return quick if QUICK else full


def summary(values: list[float], scale: float = 1000.0) -> dict[str, Any]:
    """median, p90, p99, max (in ms by default) and the number of trials."""
    if not values:
        return {"trials": 0}
    ordered = sorted(v * scale for v in values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return {
        "median": round(statistics.median(ordered), 3),
        "p90": round(pct(0.9), 3),
        "p99": round(pct(0.99), 3),
        "max": round(ordered[-1], 3),
        "min": round(ordered[0], 3),
        "trials": len(ordered),
    }


# Every Proc's reader thread notifies this when a line arrives: waits block on it, no polling.
_arrived = threading.Condition()


class Proc:
    """A child process whose stdout lines are collected with ``rx``, their arrival time here.

    JSON lines (worker.py's protocol) become events as sent, plus ``rx``; other lines
    (``json_lines=False``, e.g. etcdctl) become ``{"ev": "line", "line": ..., "t": rx, "rx": rx}``.
    """

    def __init__(self, cmd: list[str], *, json_lines: bool = True) -> None:
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self.events: list[dict[str, Any]] = []
        self._json = json_lines
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        # a blocking read per line: the stamp is taken as soon as the line is readable
        for line in self.proc.stdout:
            rx = clock()
            if self._json:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                event["rx"] = rx
            else:
                event = {"ev": "line", "line": line.rstrip("\n"), "t": rx, "rx": rx}
            with _arrived:
                self.events.append(event)
                _arrived.notify_all()

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def find(self, ev: str, after: float = 0.0, **match: Any) -> dict[str, Any] | None:
        with _arrived:
            for event in self.events:
                if event["ev"] == ev and event["t"] > after and all(event.get(k) == v for k, v in match.items()):
                    return event
        return None

    def wait(self, ev: str, after: float = 0.0, timeout: float = 30.0, **match: Any) -> dict[str, Any] | None:
        return wait_for(lambda: self.find(ev, after, **match), timeout)

    def leads(self) -> bool:
        with _arrived:
            turns = [e for e in self.events if e["ev"] in ("elected", "demoted")]
        return self.proc.poll() is None and bool(turns) and turns[-1]["ev"] == "elected"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(cmd="quit")
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()


def wait_for(found: Callable[[], Any], timeout: float) -> Any:
    """Block until *found()* (evaluated whenever a Proc receives a line) is truthy; its value, or None."""
    with _arrived:
        return _arrived.wait_for(found, timeout) or None


def first_elected(procs: list[Proc], after: float, timeout: float) -> dict[str, Any] | None:
    """The first ``elected`` event (by arrival here) after *after* among *procs* (waits for one)."""

    def any_elected() -> dict[str, Any] | None:
        found = [e for p in procs if (e := p.find("elected", after)) is not None]
        return min(found, key=lambda e: e["rx"]) if found else None

    return wait_for(any_elected, timeout)


def step_down(
    workers: list[Proc], cmd: str, call_ev: str
) -> tuple[Proc, float, dict[str, Any] | None, dict[str, Any] | None] | None:
    """Ask the leading worker to step down: (that leader, the moment this process sent the
    command, the leader's call event, the successor's elected event), or None when no worker
    leads right now (after waiting for one). The handoff time is ``elected["rx"] - sent``."""
    leader = next((w for w in workers if w.leads()), None)
    if leader is None:
        wait_until(lambda: any(w.leads() for w in workers), 10)
        return None
    sent = clock()
    leader.send(cmd=cmd)
    call = leader.wait(call_ev, after=sent)
    return leader, sent, call, first_elected([w for w in workers if w is not leader], sent, 5)


def etcd_watchers(etcd: EtcdServer) -> tuple[float, float]:
    """(watchers, unsynced watchers) from etcd's /metrics.

    A watch created at a revision etcd already has (as etcd's Go client does for the key it
    waits on: ``WithRev(resp.Header.Revision)``) starts "unsynced"; etcd only delivers its events
    from ``syncWatchersLoop``, which runs every 100 ms (server/mvcc/watchable_store.go). A handoff
    to a candidate whose watch is still unsynced measures that tick, not the handoff: wait
    until etcd reports none before timing one.
    """
    import urllib.request

    with urllib.request.urlopen(f"http://{etcd.endpoint}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {"etcd_debugging_mvcc_watcher_total": 0.0, "etcd_debugging_mvcc_slow_watcher_total": 0.0}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return values["etcd_debugging_mvcc_watcher_total"], values["etcd_debugging_mvcc_slow_watcher_total"]


def watchers_synced(etcd: EtcdServer) -> bool:
    return etcd_watchers(etcd)[1] == 0


def worker(name: str, endpoints: str, ttl: int = 2, count: int = 1, tag: str = "w") -> Proc:
    return Proc(
        [
            sys.executable,
            str(HERE / "worker.py"),
            "--name",
            name,
            "--endpoints",
            endpoints,
            "--ttl",
            str(ttl),
            "--count",
            str(count),
            "--tag",
            tag,
        ]
    )


class RawWatch:
    """A bare watch on a prefix in this process, on a gRPC stream of its own: the floor that
    leaderelect adds to (leaderelect's shared streams add a thread hop)."""

    def __init__(self, client: EtcdClient, prefix: bytes) -> None:
        rev = client.range(b"\0", timeout=2).header.revision
        self.events: list[tuple[float, int, str]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._channel = grpc.insecure_channel(client.current_endpoint.target)
        create = pb.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix), start_revision=rev + 1)

        def requests() -> Iterator[pb.WatchRequest]:
            yield pb.WatchRequest(create_request=create)
            self._done.wait()

        watch = self._channel.stream_stream(
            "/etcdserverpb.Watch/Watch",
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchResponse.FromString,
        )
        self._call = watch(requests())
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for response in self._call:
                t = clock()
                with self._lock:
                    self.events += [(t, e.type, e.kv.key.decode()) for e in response.events]
        except grpc.RpcError:
            return

    def deleted_after(self, t0: float) -> tuple[float, str] | None:
        with self._lock:
            for t, kind, key in self.events:
                if t > t0 and kind == pb.Event.DELETE:
                    return t, key
        return None

    def close(self) -> None:
        self._done.set()
        self._call.cancel()
        self._channel.close()


# -- the floor: etcd itself ------------------------------------------------------------------


def floor(client: EtcdClient) -> dict[str, Any]:
    trials = n(200, 50)
    watch = RawWatch(client, b"bench-floor/")
    put_to_event, revoke_to_delete = [], []
    for i in range(trials):
        t0 = clock()
        client.put(f"bench-floor/{i}".encode(), b"x")
        wait_until(lambda: any(t > t0 for t, _, _ in watch.events), 5, interval=0.0002)
        put_to_event.append(next(t for t, _, _ in watch.events if t > t0) - t0)
    for i in range(trials):
        lease, _ = client.lease_grant(60)
        client.put(f"bench-floor/l{i}".encode(), b"x", lease=lease)
        t0 = clock()
        client.lease_revoke(lease)
        wait_until(lambda: watch.deleted_after(t0) is not None, 5, interval=0.0002)
        revoke_to_delete.append(watch.deleted_after(t0)[0] - t0)  # type: ignore[index]
    # expiry lateness: leases granted and never renewed; when does etcd delete their keys?
    expiry = []
    starts = []
    for i in range(n(30, 10)):
        t_send = clock()
        lease, ttl = client.lease_grant(2)
        client.put(f"bench-floor/e{i}".encode(), b"x", lease=lease)
        starts.append((f"bench-floor/e{i}", t_send + ttl))
    wait_until(lambda: sum(1 for _, k, _ in watch.events if k == pb.Event.DELETE) >= trials + len(starts), 15)
    with watch._lock:
        deleted = {key: t for t, kind, key in watch.events if kind == pb.Event.DELETE}
    for key, due in starts:
        if key in deleted:
            expiry.append(deleted[key] - due)
    watch.close()
    return {
        "put_to_watch_event": summary(put_to_event),
        "revoke_to_delete_event": summary(revoke_to_delete),
        "expiry_lateness": summary(expiry),
    }


# -- graceful handoff and observer lag -------------------------------------------------------------


def handoff_leaderelect(etcd: EtcdServer, client: EtcdClient) -> dict[str, Any]:
    """4 workers; the leader resigns (and queues again); the next one leads. The others
    report on_leader_changed: the observer lag is measured against a raw watch here.
    Handoffs: this process sends the command -> the successor's ``elected`` line arrives here."""
    name = "bench-handoff"
    workers = [worker(name, etcd.endpoint, tag=f"w{i}") for i in range(4)]
    watch = RawWatch(client, f"{name}/".encode())
    resign, stop, lag = [], [], []

    def settled() -> bool:
        return len(participants(client, name)[0]) == 4 and watchers_synced(etcd)

    try:
        wait_until(settled, 30)
        for _ in range(n(200, 40)):
            step = step_down(workers, "resign", "resign_call")
            if step is None or step[2] is None or step[3] is None:
                continue
            leader, sent, call, elected = step
            resign.append(elected["rx"] - sent)
            deleted = watch.deleted_after(call["t"])
            if deleted:
                for w in workers:
                    changed = w.wait("leader_changed", after=call["t"], timeout=0.5)
                    if changed is not None and w is not leader:
                        lag.append(changed["t"] - deleted[0])
            wait_until(settled, 5)
        # stop(): the leader's process stops its elector; a fresh worker joins each time
        for i in range(n(30, 10)):
            step = step_down(workers, "stop_leader", "stop_call")
            if step is None:
                continue
            leader, sent, call, elected = step
            if elected and call:
                stop.append(elected["rx"] - sent)
            leader.close()
            workers.remove(leader)
            workers.append(worker(name, etcd.endpoint, tag=f"s{i}"))
            wait_until(settled, 10)
    finally:
        watch.close()
        for w in workers:
            w.close()
    return {
        "resign_to_successor_elected": summary(resign),
        "stop_to_successor_elected": summary(stop),
        "observer_lag_after_raw_watch": summary(lag),
    }


def handoff_etcdctl(etcd: EtcdServer) -> dict[str, Any]:
    """`etcdctl elect`: SIGINT to the leader (it resigns) -> the successor prints its key.

    Set up like leaderelect's stop() handoff: 4 candidates, a fresh one joins at the back
    after each handoff, so the successor has been waiting through at least one handoff. A
    trial starts only once etcd counts a watcher for each waiting candidate and none of them
    is unsynced (see ``etcd_watchers``): etcdctl prints nothing while it waits, and a
    candidate's key in etcd does not mean it is watching yet.
    """
    name = "bench-etcdctl"
    etcdctl = find_etcd("etcdctl")
    count = 4

    def spawn(i: int) -> Proc:
        return Proc([etcdctl, "--endpoints", etcd.endpoint, "elect", name, f"p{i}"], json_lines=False)

    def key_line(p: Proc, after: float = 0.0) -> dict[str, Any] | None:
        # elected: `etcdctl elect NAME PROPOSAL` prints the leader key, then the proposal
        with _arrived:
            return next((e for e in p.events if e["rx"] > after and e["line"].startswith(f"{name}/")), None)

    def leads(p: Proc) -> bool:
        return p.proc.poll() is None and key_line(p) is not None

    base_watchers = etcd_watchers(etcd)[0]
    client = EtcdClient(parse_endpoints(etcd.endpoint)[0])

    def settled(procs: list[Proc]) -> bool:
        if len(participants(client, name)[0]) != count or sum(leads(p) for p in procs) != 1:
            return False
        watchers, unsynced = etcd_watchers(etcd)
        return unsynced == 0 and watchers - base_watchers >= count - 1

    procs = [spawn(i) for i in range(count)]
    times = []
    try:
        for i in range(count, n(200, 40) + count):
            if not wait_until(lambda: settled(procs), 10):
                continue
            leader = next(p for p in procs if leads(p))
            others = [p for p in procs if p is not leader]
            sent = clock()
            leader.proc.send_signal(signal.SIGINT)

            def successor() -> dict[str, Any] | None:
                found = [e for p in others if (e := key_line(p, sent)) is not None]
                return min(found, key=lambda e: e["rx"]) if found else None

            elected = wait_for(successor, 10)
            if elected is not None:
                times.append(elected["rx"] - sent)
            leader.proc.wait(10)
            procs.remove(leader)
            procs.append(spawn(i))
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.proc.wait(10)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait()
        client.close()
    return {"sigint_to_successor_elected": summary(times)}


# -- crash failover ------------------------------------------------------------------------------


def failover(etcd: EtcdServer, client: EtcdClient, ttl: int) -> dict[str, Any]:
    name = f"bench-failover-{ttl}"
    workers = [worker(name, etcd.endpoint, ttl=ttl, tag=f"f{i}") for i in range(2)]
    watch = RawWatch(client, f"{name}/".encode())
    total, added = [], []
    try:
        for i in range(n(30, 5)):
            wait_until(lambda: len(participants(client, name)[0]) == 2 and any(w.leads() for w in workers), 20)
            leader = next((w for w in workers if w.leads()), None)
            if leader is None:
                continue
            t0 = clock()
            leader.proc.kill()
            leader.proc.wait()
            survivor = next(w for w in workers if w is not leader)
            elected = survivor.wait("elected", after=t0, timeout=ttl + 10)
            deleted = watch.deleted_after(t0)
            if elected:
                total.append(elected["t"] - t0)
                if deleted:
                    added.append(elected["t"] - deleted[0])
            workers.remove(leader)
            workers.append(worker(name, etcd.endpoint, ttl=ttl, tag=f"r{i}"))
    finally:
        watch.close()
        for w in workers:
            w.close()
    return {"kill_to_successor_elected": summary(total, 1.0), "key_deleted_to_successor_elected": summary(added)}


# -- self-demotion precision ---------------------------------------------------------------------------


def demotion(etcd: EtcdServer, client: EtcdClient) -> dict[str, Any]:
    name = "bench-demote"
    proxy = FaultProxy(etcd.endpoint)
    cut = worker(name, proxy.endpoint, tag="cut")
    wait_until(cut.leads, 20)
    other = worker(name, etcd.endpoint, tag="other")
    watch = RawWatch(client, f"{name}/".encode())
    late, margin = [], []
    try:
        for _ in range(n(30, 5)):
            wait_until(lambda: len(participants(client, name)[0]) == 2, 20)
            if not cut.leads():
                other.send(cmd="resign")  # hand leadership back to the one we cut off
                if not wait_until(cut.leads, 10):
                    continue
            t0 = clock()
            proxy.set_mode("blackhole")
            demoted = cut.wait("demoted", after=t0, timeout=10)
            deleted = watch.deleted_after(t0)
            wait_until(lambda: watch.deleted_after(t0) is not None, 10)
            deleted = watch.deleted_after(t0)
            if demoted:
                late.append(demoted["t"] - demoted["valid_until"])
                if deleted:
                    margin.append(deleted[0] - demoted["t"])
            proxy.set_mode("pass")
    finally:
        watch.close()
        cut.close()
        other.close()
        proxy.close()
    return {"on_demoted_after_deadline": summary(late), "margin_before_etcd_deletes_key": summary(margin)}


# -- idle cost -----------------------------------------------------------------------------------------------


_CHANNEL_ONLY = """
import sys, grpc
ch = grpc.insecure_channel(sys.argv[1])
grpc.channel_ready_future(ch).result(timeout=10)
print("ready", flush=True)
sys.stdin.read()
"""

# The floor of any Python gRPC watcher: one idle watch stream iterated by one thread (grpcio's
# blocking iteration wakes every 100 ms to check for signals).
_WATCH_ONLY = """
import sys, threading, grpc
from leaderelect._etcd import pb
ch = grpc.insecure_channel(sys.argv[1])
grpc.channel_ready_future(ch).result(timeout=10)
create = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"bench-idle-watch/", range_end=b"bench-idle-watch0"))
stop = threading.Event()
def requests():
    yield create
    stop.wait()
call = ch.stream_stream("/etcdserverpb.Watch/Watch", request_serializer=pb.WatchRequest.SerializeToString,
                        response_deserializer=pb.WatchResponse.FromString)(requests())
def follow():
    for _ in call:
        pass
threading.Thread(target=follow, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

_SHARED_100 = """
import sys
from leaderelect import LeaderElector, Session
s = Session(sys.argv[1], ttl=10); s.start()
es = [LeaderElector(f"bench-idle100-{i}", session=s).start() for i in range(100)]
all(e.wait_elected(30) for e in es)
print("ready", flush=True)
sys.stdin.read()
"""

_ONE = """
import sys
from leaderelect import LeaderElector
e = LeaderElector("bench-idle1", endpoints=sys.argv[1], ttl=10).start()
e.wait_elected(30)
print("ready", flush=True)
sys.stdin.read()
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle(etcd: EtcdServer) -> dict[str, Any]:
    window = n(45, 15)
    procs = {
        "python_grpc_channel_only": subprocess.Popen(
            [sys.executable, "-c", _CHANNEL_ONLY, etcd.endpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ),
        "python_grpc_one_idle_watch_stream": subprocess.Popen(
            [sys.executable, "-c", _WATCH_ONLY, etcd.endpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ),
        "leaderelect_1_elector_ttl10": subprocess.Popen(
            [sys.executable, "-c", _ONE, etcd.endpoint], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ),
        "leaderelect_100_elections_1_session_ttl10": subprocess.Popen(
            [sys.executable, "-c", _SHARED_100, etcd.endpoint], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ),
        "etcdctl_elect_leader": subprocess.Popen(
            [find_etcd("etcdctl"), "--endpoints", etcd.endpoint, "elect", "bench-idle-go", "p"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ),
    }
    try:
        for p in procs.values():
            assert p.stdout is not None
            p.stdout.readline()  # "ready" (or etcdctl's key line once elected)
        time.sleep(2)
        before = {k: _cpu_seconds(p.pid) for k, p in procs.items()}
        t0 = clock()
        time.sleep(window)
        elapsed = clock() - t0
        result = {
            k: {
                "cpu_percent_of_one_core": round(100 * (_cpu_seconds(p.pid) - before[k]) / elapsed, 3),
                "rss_mb": round(_rss_mb(p.pid), 1),
            }
            for k, p in procs.items()
        }
        result["window_seconds"] = round(elapsed, 1)  # type: ignore[assignment]
        return result
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


# -- scale ----------------------------------------------------------------------------------------------------


def _grpc_received(etcd: EtcdServer) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://{etcd.endpoint}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("grpc_server_msg_received_total")
    )


def scale(etcd: EtcdServer, client: EtcdClient) -> dict[str, Any]:
    sizes = [1, 10, 100] if QUICK else [1, 10, 100, 500]
    out: dict[str, Any] = {}
    for size in sizes:
        name = f"bench-scale-{size}"
        per_proc = 100
        procs = [
            worker(name, etcd.endpoint, ttl=10, count=min(per_proc, size - i), tag=f"p{i}")
            for i in range(0, size, per_proc)
        ]
        # one more process whose single elector is the one that keeps handing over
        runner = worker(name, etcd.endpoint, ttl=10, tag="runner")
        try:
            wait_until(lambda: len(participants(client, name)[0]) == size + 1, 120, interval=0.2)
            time.sleep(2)
            window = n(30, 10)
            m0 = _grpc_received(etcd)
            time.sleep(window)
            per_minute = (_grpc_received(etcd) - m0) / (size + 1) * 60 / window
            times = []
            for _ in range(n(20, 5)):
                leader = next((p for p in [*procs, runner] if p.leads()), None)
                if leader is None:
                    wait_until(lambda: any(p.leads() for p in [*procs, runner]), 10)
                    continue
                sent = clock()
                leader.send(cmd="resign")
                call = leader.wait("resign_call", after=sent)
                # the successor may live in the leader's own process (100 candidates each)
                elected = first_elected([*procs, runner], sent, 5)
                if elected and call:
                    times.append(elected["rx"] - sent)
                wait_until(
                    lambda: len(participants(client, name)[0]) == size + 1 and watchers_synced(etcd), 20, interval=0.05
                )
            out[str(size)] = {"handoff": summary(times), "etcd_messages_per_candidate_per_minute": round(per_minute, 2)}
        finally:
            for p in [*procs, runner]:
                p.close()
    return out


# -- import and start cost ------------------------------------------------------------------------------------


def startup(etcd: EtcdServer) -> dict[str, Any]:
    code = "import time, sys; t=time.perf_counter(); import leaderelect; print(time.perf_counter()-t)"
    imports = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(n(10, 3))
    ]
    start_code = f"""
import time
from leaderelect import LeaderElector, election
first = []
real = election.campaign
def spy(*a, **k):
    first.append(time.perf_counter())
    return real(*a, **k)
election.campaign = spy
import leaderelect._campaign as c
c.election.campaign = spy
e = LeaderElector("bench-start", endpoints="{etcd.endpoint}", ttl=2)
t = time.perf_counter(); e.start(); e.wait_elected(10)
print(first[0] - t); e.stop()
"""
    starts = [
        float(
            subprocess.run([sys.executable, "-c", start_code], capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(n(10, 3))
    ]
    return {"import_leaderelect": summary(imports), "start_to_first_campaign_request": summary(starts)}


# -- peers: kazoo + ZooKeeper ------------------------------------------------------------------------------------


class ZooKeeper:
    """A throwaway ZooKeeper on loopback (Debian's `zookeeper` package; installed here if root)."""

    def __init__(self) -> None:
        self.skip: str | None = None
        self._client: Any = None
        if not Path("/usr/share/java/zookeeper.jar").exists() and os.geteuid() == 0:
            subprocess.run(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                "--no-install-recommends zookeeper",
                shell=True,
                capture_output=True,
                check=False,
            )
        if not Path("/usr/share/java/zookeeper.jar").exists():
            self.skip = "ZooKeeper (Debian package zookeeper) is not installed and could not be"
            return
        try:
            import kazoo  # noqa: F401
        except ImportError:
            self.skip = "kazoo is not installed (pip install -e .[bench])"
            return
        from leaderelect.testing import free_port

        self.dir = tempfile.mkdtemp(prefix="bench-zk-")
        self.port = free_port()
        # tickTime 250 ms: session timeouts from 0.5 s to 5 s, so ttl 2 and 5 are both allowed
        Path(self.dir, "zoo.cfg").write_text(
            f"tickTime=250\ndataDir={self.dir}\nclientPort={self.port}\nclientPortAddress=127.0.0.1\n"
            "4lw.commands.whitelist=ruok\nadmin.enableServer=false\n"
        )
        self.proc = subprocess.Popen(
            [
                "java",
                "-cp",
                "/etc/zookeeper/conf:/usr/share/java/*",
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                f"{self.dir}/zoo.cfg",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def ok() -> bool:
            import socket

            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as sock:
                    sock.sendall(b"ruok")
                    return sock.recv(4) == b"imok"
            except OSError:
                return False

        if not wait_until(ok, 30, interval=0.2):
            self.skip = "ZooKeeper did not start"

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def children(self, path: str) -> int:
        if self._client is None:
            from kazoo.client import KazooClient

            self._client = KazooClient(hosts=self.hosts)
            self._client.start(10)
        return len(self._client.get_children(path)) if self._client.exists(path) else 0

    def close(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client.close()
        if self.skip is None:
            self.proc.kill()
            self.proc.wait()
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)


def kazoo_worker(zk: ZooKeeper, path: str, ttl: float) -> Proc:
    return Proc([sys.executable, str(HERE / "peer_kazoo.py"), "--hosts", zk.hosts, "--path", path, "--ttl", str(ttl)])


def kazoo_peer() -> dict[str, Any]:
    zk = ZooKeeper()
    if zk.skip:
        return {"skipped": zk.skip}
    try:
        return peer_measure(
            lambda path, ttl: kazoo_worker(zk, path, ttl),
            lambda path, workers: zk.children(path) == len(workers),
            "/bench/",
        )
    finally:
        zk.close()


def tooz_peer(etcd: EtcdServer) -> dict[str, Any]:
    try:
        import tooz  # noqa: F401
    except ImportError:
        return {"skipped": "tooz is not installed (pip install -e .[bench])"}

    def spawn(name: str, ttl: float) -> Proc:
        cmd = [sys.executable, str(HERE / "peer_tooz.py"), "--endpoint", etcd.endpoint, "--name", name]
        return Proc([*cmd, "--ttl", str(int(ttl))])

    def settled(name: str, workers: list[Proc]) -> bool:
        # no queue to inspect: every worker polls the lock; settled once all run and one leads
        return all(w.find("ready") for w in workers) and sum(w.leads() for w in workers) == 1

    return peer_measure(spawn, settled, f"bench-tooz-{os.getpid()}-")


def peer_measure(
    spawn: Callable[[str, float], Proc], settled: Callable[[str, list[Proc]], bool], prefix: str
) -> dict[str, Any]:
    """The same handoff, crash-failover and idle measurements for any peer whose workers speak
    worker.py's protocol."""
    out: dict[str, Any] = {}
    path = f"{prefix}handoff"
    workers = [spawn(path, 2.0) for _ in range(4)]
    times = []
    try:
        wait_until(lambda: settled(path, workers), 30, interval=0.1)
        for _ in range(n(200, 40)):
            step = step_down(workers, "resign", "resign_call")
            if step is None:
                continue
            _, sent, call, elected = step
            if elected and call:
                times.append(elected["rx"] - sent)
            wait_until(lambda: settled(path, workers), 5, interval=0.02)
    finally:
        for w in workers:
            w.close()
    out["resign_to_successor_elected"] = summary(times)
    for ttl in (2, 5):
        path = f"{prefix}failover{ttl}"
        workers = [spawn(path, float(ttl)) for _ in range(2)]
        total = []
        try:
            for _ in range(n(30, 5)):
                wait_until(lambda: settled(path, workers) and any(w.leads() for w in workers), 30)
                leader = next((w for w in workers if w.leads()), None)
                if leader is None:
                    continue
                t0 = clock()
                leader.proc.kill()
                leader.proc.wait()
                survivor = next(w for w in workers if w is not leader)
                elected = survivor.wait("elected", after=t0, timeout=ttl + 10)
                if elected:
                    total.append(elected["t"] - t0)
                workers.remove(leader)
                workers.append(spawn(path, float(ttl)))
        finally:
            for w in workers:
                w.close()
        out[f"failover_ttl{ttl}_kill_to_successor_elected"] = summary(total, 1.0)
    idle_leader = spawn(f"{prefix}idle", 10.0)
    try:
        idle_leader.wait("elected", timeout=20)
        time.sleep(2)
        c0, t0 = _cpu_seconds(idle_leader.proc.pid), clock()
        time.sleep(n(45, 15))
        out["idle_leader"] = {
            "cpu_percent_of_one_core": round(
                100 * (_cpu_seconds(idle_leader.proc.pid) - c0) / (clock() - t0), 3
            ),
            "rss_mb": round(_rss_mb(idle_leader.proc.pid), 1),
        }
    finally:
        idle_leader.close()
    return out


# -- report -------------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    etcd_version = subprocess.run([find_etcd(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": protobuf_version,
        "leaderelect": leaderelect.__version__,
        "etcd": etcd_version,
        "quick": QUICK,
    }


@contextmanager
def timed(results: dict[str, Any], key: str) -> Iterator[None]:
    t0 = clock()
    print(f"- {key} ...", flush=True)
    yield
    print(f"  {key}: {clock() - t0:.0f} s", flush=True)


def main() -> int:
    results: dict[str, Any] = {"machine": machine()}
    with EtcdServer() as etcd:
        client = EtcdClient(parse_endpoints(etcd.endpoint)[0], call_timeout=5)
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("floor", lambda: floor(client)),
            ("handoff_leaderelect", lambda: handoff_leaderelect(etcd, client)),
            ("handoff_etcdctl", lambda: handoff_etcdctl(etcd)),
            ("failover_ttl2", lambda: failover(etcd, client, 2)),
            ("failover_ttl5", lambda: failover(etcd, client, 5)),
            ("demotion", lambda: demotion(etcd, client)),
            ("idle", lambda: idle(etcd)),
            ("scale", lambda: scale(etcd, client)),
            ("startup", lambda: startup(etcd)),
            ("kazoo", kazoo_peer),
            ("tooz", lambda: tooz_peer(etcd)),
        ]
        only = os.environ.get("ONLY")
        for key, step in steps:
            if only and key not in only.split(","):
                continue
            with timed(results, key):
                results[key] = step()
        client.close()
    out = Path(os.environ.get("BENCH_OUT", HERE))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    from report import render  # bench/report.py

    (out / "RESULTS.md").write_text(render(results))
    print((out / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    tempfile.tempdir = None
    sys.exit(main())
