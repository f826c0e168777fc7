"""A process forked from a leader's is not a leader: nothing in it ever reports leadership.

gunicorn's --preload, multiprocessing's fork start method and plain os.fork() copy the
elector's memory into the child, with the deadline of the parent's current term. The child
read ``is_leader == True`` until that deadline, and its copied view stayed ``known`` for
ever, so its health endpoint answered 200 for ever: two processes believed they led.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from typing import Any

from leaderelect import ElectorStateError, LeaderElector, Session
from leaderelect.health import health
from tests.conftest import ElectorFactory


def _in_child(probe: Any, timeout: float = 20.0) -> dict[str, Any]:
    """Run *probe()* in a forked child; returns what it returned (a JSON-able dict)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read)
            result = probe()
        except BaseException as err:
            result = {"child raised": repr(err)}
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"the forked child did not answer within {timeout} s (a lock held at fork?)")
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        return dict(json.loads(b"".join(chunks)))
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def _raises_state_error(action: Any) -> str:
    try:
        action()
    except ElectorStateError as err:
        return str(err)
    return "did not raise"


def test_a_forked_copy_of_a_leader_never_reports_leadership(make_elector: ElectorFactory) -> None:
    elector = make_elector("parent", ttl=10).start()
    assert elector.wait_elected(10)
    assert elector.observation.known and health(elector)[1] == 200

    def probe() -> dict[str, Any]:
        status = elector.status()
        time.sleep(0.2)  # long after the fork, still nothing
        return {
            "is_leader": elector.is_leader,
            "term": repr(elector.term),
            "leader": repr(elector.leader),
            "known": elector.observation.known,
            "role": status["role"],
            "error": status["error"],
            "health": health(elector)[1],
            "json": json.dumps(status, allow_nan=False) is not None,
            "lease": repr(elector._session.lease),
            "resign": _raises_state_error(elector.resign),
            "proclaim": _raises_state_error(lambda: elector.proclaim("child")),
            "fenced_put": _raises_state_error(lambda: elector.fenced_put("k", "v")),
            "wait_elected": _raises_state_error(lambda: elector.wait_elected(0)),
            "stop": _raises_state_error(elector.stop),
        }

    seen = _in_child(probe)
    assert seen.pop("is_leader") is False
    assert seen.pop("term") == "None"
    assert seen.pop("leader") == "None"
    assert seen.pop("known") is False
    assert seen.pop("role") == "forked copy"
    assert "fork" in seen.pop("error")
    assert seen.pop("health") == 503
    assert seen.pop("json") is True
    assert seen.pop("lease") == "None"
    for action, message in seen.items():
        assert "post_fork" in message, (action, message)  # each names the fix
    # and the parent is untouched
    assert elector.is_leader and elector.observation.known


def test_a_forked_copy_of_a_shared_session_holds_no_lease(make_elector: ElectorFactory, etcd: Any) -> None:
    with Session(etcd.endpoint, ttl=10) as session:
        elector = LeaderElector(make_elector().name + "-shared", session=session).start()
        try:
            assert elector.wait_elected(10)
            assert session.lease is not None

            def probe() -> dict[str, Any]:
                seen = {"lease": repr(session.lease), "alive": elector.term is not None, "stopped": elector.stopped}
                session.close()  # a forked copy's close must not revoke the parent's lease
                return seen

            seen = _in_child(probe)
            assert seen == {"lease": "None", "alive": False, "stopped": True}
            time.sleep(0.5)
            assert elector.is_leader and len(elector.participants()) == 1  # the key is still there
        finally:
            elector.stop()
