"""Start contender processes and read their histories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from leaderelect._clock import clock
from leaderelect.chaos.jsonl import read_jsonl


@dataclass
class Contender:
    """A contender child process and the path of its history."""

    history: str
    args: list[str]
    #: a command prefix, such as ``ip netns exec NS``
    prefix: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    crashed_at: list[float] = field(default_factory=list)
    #: the program: a contender, or a crowd of candidates (``leaderelect.chaos.crowd``)
    module: str = "leaderelect.chaos.contender"

    def start(self) -> Contender:
        cmd = [*self.prefix, sys.executable, "-m", self.module, "--history", self.history, *self.args]
        with open(self.history + ".stderr", "ab") as stderr:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def events(self) -> list[dict[str, Any]]:
        if not os.path.exists(self.history):
            return []
        return read_jsonl(self.history)

    def last(self, ev: str) -> dict[str, Any] | None:
        found = [e for e in self.events() if e["ev"] == ev]
        return found[-1] if found else None

    def leads(self) -> bool:
        """Per its history: its last elected/demoted event is an election (and it is alive)."""
        turns = [e for e in self.events() if e["ev"] in ("elected", "demoted")]
        return self.alive and bool(turns) and turns[-1]["ev"] == "elected"

    def kill(self) -> float:
        """SIGKILL; appends a ``crashed`` marker to its history (it cannot)."""
        assert self.proc is not None
        self.proc.kill()
        t = clock()
        self.proc.wait(10)
        with open(self.history, "a") as fh:
            fh.write(json.dumps({"t": t, "pid": self.proc.pid, "ev": "crashed"}) + "\n")
        self.crashed_at.append(t)
        return t

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
