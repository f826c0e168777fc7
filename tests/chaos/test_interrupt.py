"""A chaos run ended by a signal cleans up after itself."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from leaderelect.testing import wait_until


def _running_in_group(pgid: int) -> list[int]:
    """The processes of group *pgid* that still run (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            found.append(int(entry))
    return found


def _temp_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "leaderelect-*")))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_and_everything_it_started(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM ended the run at once and left its etcd cluster, contenders and folders
    behind; SIGINT was ignored by a run started in the background from a script."""
    before = _temp_dirs()
    out = tmp_path / "histories"
    log = tmp_path / "run.log"
    schedule = ",".join(["kill9_leader"] * 20)
    command = [sys.executable, "-m", "leaderelect.chaos", "run", "--contenders", "2", "--no-fences"]
    with open(log, "wb") as fh:
        run = subprocess.Popen(
            [*command, "--schedule", schedule, "--seed", "1", "--out", str(out)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # as from a script's background job: SIGINT ignored from the start
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        assert wait_until(lambda: "kill9_leader" in log.read_text(), 60), log.read_text()
        run.send_signal(sig)
        assert run.wait(60) == 130, log.read_text()
        assert wait_until(lambda: not _running_in_group(run.pid), 10), _running_in_group(run.pid)
        assert _temp_dirs() <= before
        assert "chaos: stopped after" in log.read_text()
    finally:  # whatever it left (the old code left the cluster and contenders running)
        if _running_in_group(run.pid):  # (a group with members keeps its number)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
        run.wait(10)
        for left in _temp_dirs() - before:
            shutil.rmtree(left, ignore_errors=True)
