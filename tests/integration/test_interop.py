"""Python and Go candidates share one election: etcdctl elect, both directions."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest

from leaderelect.testing import EtcdServer, find_etcd, wait_until
from tests.conftest import ElectorFactory


class Etcdctl:
    """``etcdctl elect`` as a child process; its stdout lines arrive on a queue."""

    def __init__(self, etcd: EtcdServer, *args: str) -> None:
        cmd = [find_etcd("etcdctl"), "--endpoints", etcd.endpoint, "elect", *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, name="etcdctl-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, text: str, timeout: float = 10) -> list[str]:
        """Read lines until one equals *text*; returns what was read."""
        seen: list[str] = []
        while True:
            line = self.lines.get(timeout=timeout)
            seen.append(line)
            if line == text:
                return seen

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # etcdctl resigns and revokes its session on SIGINT
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def etcdctl(etcd: EtcdServer) -> Iterator[list[Etcdctl]]:
    started: list[Etcdctl] = []
    yield started
    for proc in started:
        proc.stop()


def test_go_leader_then_python_candidate(
    make_elector: ElectorFactory, etcd: EtcdServer, name: str, etcdctl: list[Etcdctl]
) -> None:
    go = Etcdctl(etcd, name, "go-proposal")
    etcdctl.append(go)
    lines = go.expect("go-proposal")  # etcdctl prints the key, then the value, once elected
    assert lines[-2].startswith(f"{name}/")
    py = make_elector("py-proposal").start()
    assert wait_until(lambda: py.leader is not None and py.leader.value == "go-proposal", 5)
    assert not py.wait_elected(1)
    queue_ = py.participants()
    assert [c.value for c in queue_] == ["go-proposal", "py-proposal"]
    assert queue_[0].key == lines[-2]
    go.stop()
    assert py.wait_elected(5)
    assert py.term is not None and py.term.token > queue_[0].token


def test_python_leader_then_go_candidate_and_observer(
    make_elector: ElectorFactory, etcd: EtcdServer, name: str, etcdctl: list[Etcdctl]
) -> None:
    py = make_elector("py-proposal").start()
    assert py.wait_elected(10)
    observer = Etcdctl(etcd, "-l", name)
    etcdctl.append(observer)
    observer.expect("py-proposal")
    go = Etcdctl(etcd, name, "go-proposal")
    etcdctl.append(go)
    assert wait_until(lambda: len(py.participants()) == 2, 10)
    assert go.lines.empty()  # the Go candidate waits behind us
    assert py.proclaim("py-proclaimed")
    observer.expect("py-proclaimed")
    py.stop()
    go.expect("go-proposal")  # elected after our key went away
    observer.expect("go-proposal")
