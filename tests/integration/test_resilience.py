"""A bug in one step never leaves a silently dead thread: it is logged and the loop goes on."""

from __future__ import annotations

from typing import Any

import pytest

from leaderelect import election
from leaderelect._driver import Driver
from leaderelect._observer import Observer
from tests.conftest import ElectorFactory


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: Any, attr: str) -> list[int]:
    real = getattr(owner, attr)
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"injected failure in {attr}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, attr, flaky)
    return calls


@pytest.mark.parametrize(
    ("owner", "attr"),
    [(Observer, "_sync"), (Driver, "_execute"), (election, "campaign")],
    ids=["observer", "session", "campaign"],
)
def test_unexpected_error_is_logged_and_the_elector_recovers(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    make_elector: ElectorFactory,
    owner: Any,
    attr: str,
) -> None:
    calls = fail_once(monkeypatch, owner, attr)
    elector = make_elector("x").start()
    assert elector.wait_elected(10)
    assert len(calls) >= 2
    assert any(f"injected failure in {attr}" in str(r.exc_info) for r in caplog.records if r.exc_info)
