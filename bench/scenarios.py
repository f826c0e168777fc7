"""What ``make bench`` measures of leaderelect itself, and of etcd's floor and `etcdctl elect`
on the same etcd: one function per measurement, each returning its summaries."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

from harness import (
    QUICK,
    Proc,
    RawWatch,
    cpu_seconds,
    crash_failovers,
    etcd_watchers,
    first_elected,
    grpc_messages_received,
    n,
    rss_mb,
    step_down,
    summary,
    wait_for,
    watchers_synced,
    worker,
)

from leaderelect import clock
from leaderelect._config import parse_endpoints
from leaderelect._etcd import EtcdClient, pb
from leaderelect.election import participants
from leaderelect.testing import EtcdServer, FaultProxy, find_etcd, wait_until

# -- the floor: etcd itself ------------------------------------------------------------------


def floor(client: EtcdClient) -> dict[str, Any]:
    trials = n(200, 50)
    watch = RawWatch(client, b"bench-floor/")
    put_to_event, revoke_to_delete = [], []
    for i in range(trials):
        t0 = clock()
        client.put(f"bench-floor/{i}".encode(), b"x")
        wait_until(lambda: any(t > t0 for t, _, _ in watch.received()), 5, interval=0.0002)
        put_to_event.append(next(t for t, _, _ in watch.received() if t > t0) - t0)
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
    wait_until(lambda: sum(1 for _, k, _ in watch.received() if k == pb.Event.DELETE) >= trials + len(starts), 15)
    deleted = {key: t for t, kind, key in watch.received() if kind == pb.Event.DELETE}
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
            if step is None:
                continue
            leader, sent, call, elected = step
            if call is None or elected is None:
                continue
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
        return next((e for e in p.received() if e["rx"] > after and e["line"].startswith(f"{name}/")), None)

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
    total: list[float] = []
    added: list[float] = []

    def each(t0: float, elected: dict[str, Any]) -> None:
        total.append(elected["t"] - t0)
        # read as the trial ends: a deletion the bare watch has not seen yet is left out,
        # not counted later with a late (even negative) sample
        deleted = watch.deleted_after(t0)
        if deleted:
            added.append(elected["t"] - deleted[0])

    try:
        crash_failovers(
            workers,
            lambda i: worker(name, etcd.endpoint, ttl=ttl, tag=f"r{i}"),
            lambda: len(participants(client, name)[0]) == 2,
            ttl,
            n(30, 5),
            each,
        )
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
        before = {k: cpu_seconds(p.pid) for k, p in procs.items()}
        t0 = clock()
        time.sleep(window)
        elapsed = clock() - t0
        result: dict[str, Any] = {
            k: {
                "cpu_percent_of_one_core": round(100 * (cpu_seconds(p.pid) - before[k]) / elapsed, 3),
                "rss_mb": round(rss_mb(p.pid), 1),
            }
            for k, p in procs.items()
        }
        result["window_seconds"] = round(elapsed, 1)
        return result
    finally:
        # the Python ones end when their stdin closes (no KeyboardInterrupt traceback);
        # etcdctl resigns on SIGINT
        for p in procs.values():
            if p.stdin is not None:
                p.stdin.close()
        procs["etcdctl_elect_leader"].send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


# -- scale ----------------------------------------------------------------------------------------------------


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
            m0 = grpc_messages_received(etcd)
            time.sleep(window)
            per_minute = (grpc_messages_received(etcd) - m0) / (size + 1) * 60 / window
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


# -- a burst of deletions ahead of a process with many electors ---------------------------------------


def burst(etcd: EtcdServer, client: EtcdClient) -> dict[str, Any]:
    """Candidate keys on leases of their own fill the queue, then one worker process with
    *count* electors queues behind them; the leases ahead are revoked in queue order, as fast
    as one client can. Timed from the return of the last revoke to the arrival of the
    worker's "elected" line: a process with many electors of one election (a service that
    runs one per tenant, the chaos crowd) must take its turn as fast as a process with one."""
    ahead = n(800, 200)
    out: dict[str, Any] = {"ahead": ahead}
    for count in (1, 100) if QUICK else (1, 200):
        name = f"bench-burst-{count}"
        times = []
        for trial in range(n(5, 2)):
            leases = []
            for _ in range(ahead):
                lease, _ttl = client.lease_grant(60)
                client.put(f"{name}/{lease:x}".encode(), b"ahead", lease=lease)
                leases.append(lease)
            proc = worker(name, etcd.endpoint, ttl=10, count=count, tag=f"t{trial}")
            try:
                wait_until(
                    lambda: len(participants(client, name)[0]) == ahead + count and watchers_synced(etcd),
                    120,
                    interval=0.2,
                )
                time.sleep(1)
                for lease in leases:
                    client.lease_revoke(lease)
                last = clock()
                elected = proc.wait("elected", timeout=60)
                if elected is not None:
                    times.append(elected["rx"] - last)
            finally:
                proc.close()
        out[str(count)] = summary(times)
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
election.campaign = spy  # the driver calls election.campaign at each join
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
