"""The driver: the core's calls go out in the order the core asked for them, per election."""

from __future__ import annotations

import random
import threading
from typing import Any

from leaderelect import clock
from leaderelect._driver import Driver
from leaderelect._etcd import pb
from leaderelect.core import Config, ElectionCore
from leaderelect.core.messages import Action
from leaderelect.core.session import SessionCore
from leaderelect.testing import wait_until

SETTINGS = Config(name="jobs", value=b"me", ttl=30, guard=1.0, call_timeout=2.0, demote_timeout=1.0)


class HeldJoins:
    """Stands in for the etcd client: grants a lease, holds each join until released, and
    records the calls in the order they reach it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = threading.Event()

    def lease_grant(self, ttl: int, *, timeout: float) -> tuple[int, int]:
        self.calls.append("grant")
        return 0x1F, ttl

    def lease_revoke(self, lease_id: int, *, timeout: float) -> None:
        self.calls.append("revoke")

    def txn(self, compare: Any, success: Any, failure: Any = (), *, timeout: float) -> pb.TxnResponse:
        self.calls.append("join")
        self.release.wait(5)
        self.calls.append("key created")
        return pb.TxnResponse(succeeded=True, header=pb.ResponseHeader(revision=5))

    def delete(self, key: bytes, *, timeout: float) -> pb.DeleteRangeResponse:
        self.calls.append("delete")
        return pb.DeleteRangeResponse(deleted=1)


def test_a_withdrawal_never_overtakes_the_join_it_undoes() -> None:
    """On a shared session an election stopped while its join was on its way withdraws its
    key with a delete. On a lane of its own that delete went out first (and found nothing),
    then the join created the key on a lease the session kept renewing: a candidate nobody
    owns, and once it was first, no leader for as long as the session lived."""
    client = HeldJoins()
    core = SessionCore(SETTINGS, random.Random(1))
    actions: list[Action] = []
    driver = Driver(
        core,
        client,  # type: ignore[arg-type]
        name="test",
        clock=clock,
        on_action=actions.append,
        after_input=lambda now: None,
        on_renewed=lambda seconds: None,
    )
    made: list[ElectionCore] = []
    driver.run(lambda now: made.append(ElectionCore(SETTINGS, random.Random(1), session=core)))
    (election,) = made
    try:
        driver.start()
        driver.run(election.start)
        assert wait_until(lambda: "join" in client.calls, 5)  # held on its way
        driver.run(lambda now: election.stop(now))
        assert wait_until(lambda: core.pending_withdrawals() == 1, 5)
        client.release.set()
        assert wait_until(lambda: core.pending_withdrawals() == 0, 5)
        assert client.calls == ["grant", "join", "key created", "delete"]
    finally:
        client.release.set()
        driver.close(5)
