"""``leaderelect run NAME -- CMD``: run a command only while this process leads.

The command runs in a process group of its own, so that on demotion the whole group -
the command and anything it spawned - gets SIGTERM, then SIGKILL after a grace period
(consul lock's issue #2022 is the bug to avoid: a grandchild left running). The group is
stopped inside ``on_demoted``, and on ``stop()``/``resign()`` leaderelect deletes its key
only after ``on_demoted`` returned: a successor never overlaps the old command.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from leaderelect.elector import LeaderElector
from leaderelect.term import DemotionReason, Term

log = logging.getLogger(__name__)


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is None:  # (reaps the group leader, or its zombie keeps the group "alive")
        return True  # the command itself runs
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    if _only_zombies(proc.pid):
        # A member forked between the scan's listing and its reads would be missed: it
        # gets SIGKILL too (zombies ignore it).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return False
    return True


def _only_zombies(pgid: int) -> bool:
    """Whether every process of group *pgid* has exited and waits to be reaped. killpg(pgid,
    0) finds these zombies too, for ever if their parent is a container's PID 1 that reaps
    nothing: waiting for them cost each demotion SIGKILL's 5 s. Read from Linux's /proc; if
    it cannot tell (no such /proc, hidden processes, another PID namespace: no member
    seen), the group counts as running."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    members = 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except FileNotFoundError:
            continue  # gone meanwhile
        except OSError:
            return False  # hidden from us: it may be a member that runs
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            if fields[0] not in (b"Z", b"X"):
                return False
            members += 1
    return members > 0


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the whole process group; SIGKILL to whatever is left after *grace* seconds.

    Waits for every member of the group, not just the command: a grandchild that ignores
    SIGTERM is what consul lock left running (its issue #2022).
    """
    done = threading.Event()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while _group_alive(proc) and time.monotonic() < deadline:
            done.wait(0.02)
        if not _group_alive(proc):
            return
    log.error("process group %d survived SIGKILL", proc.pid)


class Runner:
    """Runs *command* while *elector* leads; ``run()`` returns the exit code to use."""

    def __init__(self, elector: LeaderElector, command: Sequence[str], grace: float) -> None:
        self.elector = elector
        self.command = list(command)
        self.grace = grace
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._events: queue.Queue[tuple[str, int]] = queue.Queue()
        elector.on_elected(self._start)
        elector.on_demoted(self._stop)

    def _start(self, term: Term) -> None:
        with self._lock:
            log.warning("elected (token %d): starting %s", term.token, self.command)
            try:
                self._child = subprocess.Popen(self.command, start_new_session=True)
            except OSError as err:
                log.error("cannot start %s: %s", self.command, err)
                self._events.put(("exited", 127))
                return
            child = self._child
        threading.Thread(target=self._reap, args=(child,), name="leaderelect-run-reaper", daemon=True).start()

    def _reap(self, child: subprocess.Popen[bytes]) -> None:
        code = child.wait()
        with self._lock:
            if self._child is not child:
                return  # stopped by a demotion, not ended by itself
            self._child = None
        self._events.put(("exited", code))

    def _stop(self, term: Term, reason: DemotionReason) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            log.warning("demoted (%s): stopping %s", reason, self.command)
            stop_group(child, self.grace)

    def run(self) -> int:
        def on_signal(signum: int, _frame: object) -> None:
            self._events.put(("signal", signum))

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        with self.elector:
            while True:
                try:  # a timeout keeps the main thread responsive to signals
                    kind, value = self._events.get(timeout=0.5)
                    break
                except queue.Empty:
                    continue
        # stop() ran on_demoted (which stopped the group) before deleting the key
        if kind == "exited":
            log.warning("%s exited with %d", self.command, value)
            return value
        return 128 + value
