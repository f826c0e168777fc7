"""Reading a contender's history while the contender appends to it (the harness does this
between faults): a line written in two pieces must never come back as a broken record."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from leaderelect.chaos.procs import Contender


def test_a_history_read_while_a_line_is_half_written_has_only_whole_records(tmp_path: Path) -> None:
    path = tmp_path / "c0.jsonl"
    path.write_text("")
    done = threading.Event()

    def append() -> None:
        with open(path, "a") as fh:
            for i in range(100_000):
                if done.is_set():
                    return
                line = json.dumps({"t": float(i), "pid": 20861, "ev": "resource_write", "token": i})
                fh.write(line[:20])  # the first piece is on disk ...
                fh.flush()
                time.sleep(0.0002)  # ... while the reader reaches its end of file
                fh.write(line[20:] + "\n")
                fh.flush()

    writer = threading.Thread(target=append, daemon=True)
    writer.start()
    contender = Contender(history=str(path), args=[])
    reads = 0
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            events = contender.events()
            assert [e["token"] for e in events] == list(range(len(events)))
            reads += 1
    finally:
        done.set()
        writer.join(5)
    assert reads > 100
