"""Real pre-fork servers (gunicorn, uWSGI) started from the examples, and the election they join."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from leaderelect.testing import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
APPS = Path(__file__).resolve().parent / "apps"
BIN = Path(sys.executable).parent


class Server:
    """A server process group of our own: its master, its workers, its output."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - open for the server's lifetime
            prefix="leaderelect-server-", suffix=".log", delete=False
        )
        full_env = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{ROOT}", **env}
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def workers(self) -> set[int]:
        """The master's live child processes."""
        pids: set[int] = set()
        try:
            for task in os.listdir(f"/proc/{self.proc.pid}/task"):
                with open(f"/proc/{self.proc.pid}/task/{task}/children") as fh:
                    pids.update(int(p) for p in fh.read().split())
        except OSError:
            return set()
        return {p for p in pids if _alive(p)}

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, _body(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, _body(err.read())

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM to the master (graceful: workers resign); SIGKILL to the group if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # our own group: leftover workers, if any
        self.proc.wait(5)
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        self._log.close()
        os.unlink(self._log.name)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def queue_pids(etcd3_client: Any, name: str) -> list[int]:
    """The pids of the election's candidates in queue order (values are the default host:pid)."""
    kvs = etcd3_client.get_prefix(name + "/", sort_order="ascend", sort_target="create")
    return [int(value.decode().rsplit(":", 1)[1]) for value, _ in kvs]


def assert_one_leader_among_workers(server: Server, etcd3_client: Any, name: str, timeout: float = 30.0) -> int:
    """Wait until exactly the server's workers campaign; return the leading worker's pid."""

    def settled() -> bool:
        workers = server.workers()
        return len(workers) == 2 and set(queue_pids(etcd3_client, name)) == workers

    if not wait_until(settled, timeout, 0.1):
        raise AssertionError(
            f"workers {server.workers()} vs candidates {queue_pids(etcd3_client, name)}\n{server.output()[-3000:]}"
        )
    return queue_pids(etcd3_client, name)[0]


def assert_failover_on_kill(server: Server, etcd3_client: Any, name: str, leader: int, ttl: int) -> float:
    """kill -9 the leading worker; the other worker must lead within ttl + 3 s. Returns seconds."""
    other = (server.workers() - {leader}).pop()
    t0 = time.monotonic()
    os.kill(leader, signal.SIGKILL)
    ok = wait_until(lambda: queue_pids(etcd3_client, name)[:1] == [other], ttl + 3, 0.02)
    took = time.monotonic() - t0
    assert ok, f"{queue_pids(etcd3_client, name)} after killing {leader}\n{server.output()[-3000:]}"
    return took


def assert_status_agrees(server: Server, leader: int, timeout: float = 10.0) -> None:
    """Every worker that answers GET /leaderelect (200, JSON) agrees on who leads, once the
    leader has confirmed its term (its key exists a moment before it leads)."""

    def agrees(body: dict[str, Any]) -> bool:
        leads = body["role"] == "leader"
        return leads == (body["pid"] == leader) and str(body["leader"]).endswith(f":{leader}")

    last: list[Any] = []

    def batch_agrees() -> bool:
        last[:] = [server.get("/leaderelect") for _ in range(6)]
        return all(code == 200 and agrees(body) for code, body in last)

    assert wait_until(batch_agrees, timeout, 0.05), (leader, last)
