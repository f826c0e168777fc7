"""A shared Session: what happens to its electors when it closes, when one stops while
the connection fails, and when one fails to start."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from leaderelect import ConfigurationError, DemotionReason, ElectorStateError, LeaderElector, Session, Term, _observer
from leaderelect.testing import EtcdServer, FaultProxy, wait_until
from tests.conftest import leaderelect_threads


@pytest.fixture
def no_threads_left() -> Iterator[None]:
    before = set(leaderelect_threads())
    yield
    assert wait_until(lambda: set(leaderelect_threads()) <= before, 10), leaderelect_threads()


def test_closing_a_session_stops_its_electors_with_a_reason(
    etcd: EtcdServer, name: str, etcd3_client: Any, no_threads_left: None
) -> None:
    """close() with electors still running left them half-dead: not stopped, role
    candidate, threads alive, never campaigning again."""
    session = Session(etcd.endpoint, ttl=5).__enter__()
    leader = LeaderElector(name, "leader", session=session)
    follower = LeaderElector(f"{name}-other", "other", session=session)
    never_started = LeaderElector(f"{name}-new", session=session)
    reasons: list[DemotionReason] = []
    leader.on_demoted(lambda term, reason: reasons.append(reason))
    leader.start()
    follower.start()
    assert leader.wait_elected(10) and follower.wait_elected(10)
    session.close()
    assert leader.stopped and follower.stopped and never_started.stopped
    assert wait_until(lambda: reasons == [DemotionReason.SESSION_CLOSED], 5), reasons
    assert leader.status()["role"] == "stopped"
    assert not list(etcd3_client.get_prefix(f"{name}/"))  # nothing left in the election
    with pytest.raises(ElectorStateError, match="closed"):
        LeaderElector(f"{name}-late", session=session)
    with pytest.raises(ElectorStateError, match="stopped"):
        never_started.start()


@contextlib.contextmanager
def waiting_on_a_shared_session(
    etcd: EtcdServer, name: str
) -> Iterator[tuple[FaultProxy, Session, LeaderElector, LeaderElector, str]]:
    """A leader on its own session, and a candidate "waiting" behind it on a shared session
    that reaches etcd through a fault proxy; yields both and the waiting one's key."""
    with FaultProxy(etcd.endpoint) as proxy, Session(proxy.endpoint, ttl=6, call_timeout=0.5) as session:
        first = LeaderElector(name, "first", endpoints=etcd.endpoint, ttl=2).start()
        try:
            assert first.wait_elected(10)
            waiting = LeaderElector(name, "waiting", session=session).start()
            assert wait_until(lambda: len(first.participants()) == 2, 10)
            yield proxy, session, first, waiting, first.participants()[1].key
        finally:
            first.stop()


def test_a_stopped_electors_key_goes_even_if_the_connection_resets_during_stop(
    etcd: EtcdServer, name: str, etcd3_client: Any, no_threads_left: None
) -> None:
    """On a shared session the withdraw was tried once: if the connection was reset at that
    moment, the key stayed on a lease the session kept renewing, and nobody could lead
    after the electors ahead of it for as long as the session lived."""
    with waiting_on_a_shared_session(etcd, name) as (proxy, session, first, waiting, key):
        proxy.set_mode("reset")
        waiting.stop()
        assert waiting.stopped
        assert etcd3_client.get(key)[0] == b"waiting"  # the delete could not get through
        proxy.set_mode("pass")
        assert wait_until(lambda: etcd3_client.get(key)[0] is None, 5), "the key stayed"
        assert session.lease is not None  # it went because it was withdrawn, not with the lease
        first.stop()
        assert not list(etcd3_client.get_prefix(f"{name}/"))


def test_a_failed_start_leaves_nothing_running_and_stop_works(
    etcd: EtcdServer, name: str, monkeypatch: pytest.MonkeyPatch, no_threads_left: None
) -> None:
    """A failure inside start() (here: the observer's thread cannot start) left stop()
    raising "cannot join thread before it is started", a callbacks thread running and the
    name claimed on the session."""

    def cannot_start(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("can't start new thread")

    with Session(etcd.endpoint, ttl=5) as session:
        elector = LeaderElector(name, session=session)
        elector.on_elected(lambda term: None)
        with monkeypatch.context() as patch:
            patch.setattr(_observer, "acquire", cannot_start)
            with pytest.raises(RuntimeError, match="can't start"):
                elector.start()
        elector.stop()  # a no-op, not an error
        assert elector.stopped
        again = LeaderElector(name, session=session).start()  # the name was released
        assert again.wait_elected(10)
        again.stop()


def test_an_own_session_is_closed_by_a_failed_start(
    name: str, monkeypatch: pytest.MonkeyPatch, etcd: EtcdServer, no_threads_left: None
) -> None:
    elector = LeaderElector(name, endpoints=etcd.endpoint, ttl=2)
    hooks: list[Callable[[Term], None]] = []
    monkeypatch.setattr(_observer, "acquire", lambda *a, **k: hooks[0])  # IndexError inside start()
    with pytest.raises(IndexError):
        elector.start()
    elector.stop()
    assert elector.stopped


def test_a_pending_withdrawal_survives_a_new_elector_that_never_starts(
    etcd: EtcdServer, name: str, etcd3_client: Any, no_threads_left: None
) -> None:
    """Claiming the name again used to drop the stopped elector's pending delete: if the new
    elector was never started, the key stayed queued on the session's live lease."""
    with waiting_on_a_shared_session(etcd, name) as (proxy, session, _first, waiting, key):
        proxy.set_mode("reset")
        waiting.stop()
        again = LeaderElector(name, "again", session=session)  # claimed, never started
        proxy.set_mode("pass")
        assert wait_until(lambda: etcd3_client.get(key)[0] is None, 5), "the key stayed"
        again.stop()


def test_a_pending_withdrawal_survives_a_new_elector_that_stops_before_it_joins(
    etcd: EtcdServer, name: str, etcd3_client: Any, no_threads_left: None
) -> None:
    """A new elector of the name dropped its predecessor's pending delete as its thread
    began, not as it joined: stopped before it joined, it withdrew nothing, and the key stayed
    queued on the session's live lease. The core drops it only as it joins (``may_join``;
    ``tests/unit/test_core.py`` holds a new election before its join): here the new elector
    starts and stops while etcd cannot be reached, joined or not, and the key must go
    either way."""
    with waiting_on_a_shared_session(etcd, name) as (proxy, session, _first, waiting, key):
        proxy.set_mode("reset")
        waiting.stop()
        assert session.lease is not None
        again = LeaderElector(name, "again", session=session)
        again.start()
        time.sleep(0.3)  # it tries to join, and cannot
        again.stop()
        proxy.set_mode("pass")
        assert wait_until(lambda: etcd3_client.get(key)[0] is None, 5), "the key stayed"


def test_a_new_elector_adopts_its_predecessors_key_and_no_late_delete_removes_it(
    etcd: EtcdServer, name: str, etcd3_client: Any, no_threads_left: None
) -> None:
    """A stopped candidate's delete is pending when a new elector of the same name starts on
    the same session (same lease, same key): it adopts the key, and the pending delete is
    cancelled first, so it can never land after the adoption."""
    with FaultProxy(etcd.endpoint) as proxy, Session(proxy.endpoint, ttl=6, call_timeout=0.5) as session:
        leader = LeaderElector(name, "leader", endpoints=etcd.endpoint, ttl=2).start()
        try:
            assert leader.wait_elected(10)
            first = LeaderElector(name, "first", session=session).start()
            assert wait_until(lambda: len(leader.participants()) == 2, 10)
            key = leader.participants()[1].key
            proxy.set_mode("reset")
            first.stop()  # its delete is left pending
            second = LeaderElector(name, "second", session=session)
            proxy.set_mode("pass")
            second.start()
            assert wait_until(lambda: etcd3_client.get(key)[0] == b"second", 5)  # adopted
            time.sleep(1.0)  # several retry rounds of a delete, had it stayed pending
            assert etcd3_client.get(key)[0] == b"second"
            leader.stop()
            assert second.wait_elected(10)
            second.stop()
        finally:
            leader.stop()


def test_an_elector_that_fails_to_construct_leaves_the_session_usable(etcd: EtcdServer, name: str) -> None:
    """The name used to be claimed before the rest of the constructor ran: a bad setting
    left it claimed with a half-built elector, and close() then failed for good."""
    with Session(etcd.endpoint, ttl=5) as session:
        with pytest.raises(ConfigurationError):
            LeaderElector(name, session=session, demote_timeout=-1)
        elector = LeaderElector(name, session=session).start()  # the name is free
        assert elector.wait_elected(10)
    assert elector.stopped and session.closed


def test_a_guard_near_its_limit_still_lets_a_candidate_lead(etcd: EtcdServer, name: str) -> None:
    """A candidate takes a term only with enough lease ahead; with a large (valid) guard,
    ttl/3 was more than a fresh lease ever has, and nobody led."""
    elector = LeaderElector(name, endpoints=etcd.endpoint, ttl=10, guard=6.65)
    with elector:
        assert elector.wait_elected(10)


def test_a_slow_stats_hook_does_not_hold_up_the_renewal_it_reports(etcd: EtcdServer, name: str) -> None:
    """The hooks ran before the core had the renewal they report: a hook slower than the
    renewal interval let the previous renewal's deadline pass, and a renewed leader was
    demoted. At ttl 5 that deadline is 2.8 s after the renewal; the hook here takes 3.5 s,
    and the renewal it reports holds the term to 4.5 s."""
    armed, entered, done = threading.Event(), threading.Event(), threading.Event()

    def slow(event: str, seconds: float) -> None:
        if event == "keepalive" and armed.is_set() and not entered.is_set():
            entered.set()
            time.sleep(3.5)
            done.set()

    elector = LeaderElector(name, endpoints=etcd.endpoint, ttl=5)
    elector.add_stats_hook(slow)
    with elector:
        assert elector.wait_elected(10)
        token = elector.term.token  # type: ignore[union-attr]
        armed.set()
        assert entered.wait(5)
        assert done.wait(10)
        time.sleep(1)  # the next renewal, sent once the hook returned
        assert elector.demotions == {}
        assert elector.term is not None and elector.term.token == token


@pytest.mark.parametrize("nested", [False, True])
def test_stop_from_a_stats_hook_returns_at_once(etcd: EtcdServer, name: str, nested: bool) -> None:
    """stop() waits for a stats hook that is running; called from one, it must not wait for
    itself (nor for the lease's revoke, queued behind the renewal that runs the hook).
    *nested*: the hook's own etcd call failed over, which runs the reconnect hooks inside
    it; coming back, the inner event marked the thread as no longer in a hook, and the
    outer hook's stop() waited out its whole bound (12 s) for itself."""
    elector = LeaderElector(name, endpoints=etcd.endpoint, ttl=2)
    took: list[float] = []

    def stop_once(event: str, seconds: float) -> None:
        if event == "keepalive" and not took:
            took.append(0.0)
            if nested:
                elector._stats("reconnect", 0.0)  # what a failover during this hook does
            began = time.monotonic()
            elector.stop()
            took[0] = time.monotonic() - began

    elector.add_stats_hook(stop_once)
    elector.start()
    try:
        assert wait_until(lambda: elector.stopped, 15)
        assert took[0] < 1.0, f"stop() in a hook took {took[0]:.1f} s"
    finally:
        elector.stop()


def test_closing_a_shared_session_from_a_callback_of_its_leader(etcd: EtcdServer, name: str) -> None:
    """A callback of the session's leader called session.close(): the close waited for the
    elector, whose on_demoted waited for that callback. The close timed out, closed the
    session's lanes, and the elector's key delete after on_demoted went nowhere: it never
    finished, and its threads ran on."""
    before = set(leaderelect_threads())
    session = Session(etcd.endpoint, ttl=2, call_timeout=0.5)
    elector = LeaderElector(name, session=session, demote_timeout=5)
    took: list[float] = []

    def close_it(term: Term) -> None:
        began = time.monotonic()
        session.close()
        took.append(time.monotonic() - began)

    elector.on_elected(close_it)
    elector.start()
    try:
        assert wait_until(lambda: took, 10)
        assert took[0] < 1.0, f"close() in a callback took {took[0]:.1f} s"
        assert wait_until(lambda: elector.stopped, 10)
        assert wait_until(lambda: set(leaderelect_threads()) <= before, 10), leaderelect_threads()
    finally:
        elector.stop()
        session.close()


def test_a_close_while_another_runs_returns_once_the_session_is_closed(etcd: EtcdServer, name: str) -> None:
    """A close() from a callback completes on a thread of its own; a second close() (the
    end of a `with session:` block) returned at once, with the lease not yet revoked and
    the threads running, and a process exiting then left the lease to expire."""
    before = set(leaderelect_threads())
    session = Session(etcd.endpoint, ttl=2, call_timeout=0.5)
    elector = LeaderElector(name, session=session, demote_timeout=5)
    handed_off = threading.Event()

    def close_it(term: Term) -> None:
        session.close()
        handed_off.set()

    elector.on_elected(close_it)
    elector.on_demoted(lambda term, reason: time.sleep(0.5))  # the close waits for this
    elector.start()
    try:
        assert handed_off.wait(10)
        session.close()
        assert session.closed and session.lease is None
        assert elector.stopped
        assert wait_until(lambda: set(leaderelect_threads()) <= before, 5), leaderelect_threads()
    finally:
        elector.stop()


def test_a_close_that_failed_does_not_hold_up_the_next(etcd: EtcdServer) -> None:
    """A close() that raised never said it was over: every later close() (the end of a
    `with session:` block) waited its whole bound for it (9 s here)."""
    session = Session(etcd.endpoint, ttl=2, call_timeout=0.5)
    session.start()
    close_client = session.client.close

    def fail() -> None:
        raise RuntimeError("a bug while closing")

    session.client.close = fail  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            session.close()
        began = time.monotonic()
        session.close()
        assert time.monotonic() - began < 1
    finally:
        close_client()


def test_a_stats_hook_that_raises_systemexit_does_not_stop_renewals(etcd: EtcdServer, name: str) -> None:
    def leave(event: str, seconds: float) -> None:
        raise SystemExit("a hook's exit")

    elector = LeaderElector(name, endpoints=etcd.endpoint, ttl=2)
    elector.add_stats_hook(leave)
    with elector:
        assert elector.wait_elected(10)
        time.sleep(3)  # longer than the lease: only renewals keep it
        # renewed every 0.67 s, and it would be over 1.5 s after its last renewal was sent
        assert elector.is_leader and elector.status()["last_renewal_age"] < 1.5


def test_an_elector_own_session_cannot_be_shared_and_its_elector_keeps_working(
    etcd: EtcdServer, name: str, no_threads_left: None
) -> None:
    """An elector's own session holds one election. Joining it from another elector
    (through ``elector.session``) raised a bare ValueError about the first election and
    took the first elector's actions away with it: it could lead without on_elected."""
    first = LeaderElector(name, endpoints=etcd.endpoint, ttl=2)
    with pytest.raises(ConfigurationError, match="own session"):
        LeaderElector(f"{name}-other", session=first.session)
    elected: list[Term] = []
    first.on_elected(elected.append)
    with first:
        assert first.wait_elected(10)
        assert wait_until(lambda: len(elected) == 1, 5)
    assert first.stopped


def test_a_stop_while_start_runs_leaves_nothing_running(
    etcd: EtcdServer, name: str, monkeypatch: pytest.MonkeyPatch, no_threads_left: None
) -> None:
    """A stop() (or a session's close()) on another thread while start() was still taking
    things finished the elector at once; start() then went on to start the observer and
    attach the hooks, and nothing released them: its threads ran for the life of the process."""
    elector = LeaderElector(name, endpoints=etcd.endpoint, ttl=2)
    real_acquire = _observer.acquire
    stopper = threading.Thread(target=elector.stop)

    def acquire_after_a_stop(*args: Any, **kwargs: Any) -> Any:
        stopper.start()
        time.sleep(0.3)  # the stop has been asked for (it waits for start() to end)
        return real_acquire(*args, **kwargs)

    monkeypatch.setattr(_observer, "acquire", acquire_after_a_stop)
    elector.start()
    stopper.join(10)
    assert not stopper.is_alive() and elector.stopped
