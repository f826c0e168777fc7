from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from leaderelect.chaos.procs import Contender

ContenderFactory = Callable[..., Contender]


@pytest.fixture
def contenders(tmp_path: Path, name: str) -> Iterator[ContenderFactory]:
    """Starts contender processes on election *name*; stops (or kills) them all at teardown."""
    made: list[Contender] = []

    def make(endpoints: str, *extra: str, ttl: int = 2) -> Contender:
        history = str(tmp_path / f"contender-{len(made)}.jsonl")
        args = ["--name", name, "--endpoints", endpoints, "--ttl", str(ttl), *extra]
        contender = Contender(history, args).start()
        made.append(contender)
        return contender

    yield make
    for contender in made:
        contender.stop()
