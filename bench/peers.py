"""The peers ``make bench`` runs beside leaderelect, timed the same way: kazoo's election on a
throwaway ZooKeeper, and tooz's etcd lock (its etcd driver has no election). Their workers
(``peer_kazoo.py``, ``peer_tooz.py``) speak worker.py's JSON lines on the same clock."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import HERE, Proc, cpu_seconds, crash_failovers, n, rss_mb, step_down, summary

from leaderelect import clock
from leaderelect.testing import EtcdServer, free_port, wait_until

# -- kazoo + ZooKeeper ------------------------------------------------------------------------------------


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
        try:
            total: list[float] = []
            crash_failovers(
                workers,
                lambda _: spawn(path, float(ttl)),
                lambda: settled(path, workers),
                ttl,
                n(30, 5),
                lambda t0, elected: total.append(elected["t"] - t0),
            )
        finally:
            for w in workers:
                w.close()
        out[f"failover_ttl{ttl}_kill_to_successor_elected"] = summary(total, 1.0)
    idle_leader = spawn(f"{prefix}idle", 10.0)
    try:
        idle_leader.wait("elected", timeout=20)
        time.sleep(2)
        c0, t0 = cpu_seconds(idle_leader.proc.pid), clock()
        time.sleep(n(45, 15))
        out["idle_leader"] = {
            "cpu_percent_of_one_core": round(100 * (cpu_seconds(idle_leader.proc.pid) - c0) / (clock() - t0), 3),
            "rss_mb": round(rss_mb(idle_leader.proc.pid), 1),
        }
    finally:
        idle_leader.close()
    return out
