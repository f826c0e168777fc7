"""leaderelect run's process-group stop, with real processes (no etcd)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from leaderelect.cli.run import stop_group
from leaderelect.testing import wait_until

# The command: it forks P, which leaves the command's group (same session) and forks C into
# that group; C exits at once and P never reaps it, so C stays a zombie in the group, as it
# does under a container's PID 1 that reaps nothing. It prints "P C".
LEAVES_A_ZOMBIE = """
import os, time
group = os.getpgrp()
r, w = os.pipe()
if os.fork() == 0:
    os.setpgid(0, 0)
    c = os.fork()
    if c == 0:
        os.setpgid(0, group)
        os._exit(0)
    os.write(w, f"{os.getpid()} {c}".encode())
    time.sleep(60)
    os._exit(0)
print(os.read(r, 100).decode(), flush=True)
time.sleep(60)
"""


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return "gone"
    return stat[stat.rfind(b")") + 2 :].split()[0].decode()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_zombie_left_in_the_group_does_not_hold_the_stop_up() -> None:
    """killpg(group, 0) also finds a member that exited and was not reaped: stop_group()
    waited out the grace and SIGKILL's 5 s for it, and logged that the group survived."""
    command = subprocess.Popen(
        [sys.executable, "-c", LEAVES_A_ZOMBIE], start_new_session=True, stdout=subprocess.PIPE
    )  # its own group, as the runner starts it
    assert command.stdout is not None
    parent, zombie = (int(pid) for pid in command.stdout.readline().split())
    try:
        assert wait_until(lambda: _state(zombie) == "Z", 5)
        began = time.monotonic()
        stop_group(command, grace=2.0)
        took = time.monotonic() - began
        assert command.poll() is not None  # the command itself was stopped
        assert took < 1.5, f"stop_group took {took:.1f} s"
    finally:
        if command.poll() is None:
            command.kill()
        command.wait(5)
        command.stdout.close()
        os.kill(parent, signal.SIGKILL)  # P is in a group of its own: the stop left it
