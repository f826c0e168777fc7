"""elector.status() behind Flask, and the Prometheus metrics, in one process (the real
servers are in tests/workers)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from leaderelect.health import flask_blueprint, health
from leaderelect.testing import wait_until
from tests.conftest import ElectorFactory

flask = pytest.importorskip("flask")
prometheus_client = pytest.importorskip("prometheus_client")


def test_health_follows_the_elector(make_elector: ElectorFactory) -> None:
    elector = make_elector()
    current: dict[str, Any] = {"elector": None}
    app = flask.Flask(__name__)
    app.register_blueprint(flask_blueprint(lambda: current["elector"], url="/health"))
    client = app.test_client()
    not_started = client.get("/health")
    assert not_started.status_code == 503 and not_started.json == {"role": "not started"}

    current["elector"] = elector
    elector.start()
    assert elector.wait_elected(5)
    assert wait_until(lambda: client.get("/health").status_code == 200, 5)
    body = client.get("/health").json
    assert body["role"] == "leader" and body["token"] == elector.term.token  # type: ignore[union-attr]
    assert 0 < body["valid_for"] <= 2 and 0 <= body["last_renewal_age"] < 1.5
    assert body["leader"] == elector.value and body["leader_known"] is True

    elector.stop()
    stopped = client.get("/health")
    assert stopped.status_code == 503 and stopped.json["role"] == "stopped"
    assert health(elector)[1] == 503


def test_status_never_shows_a_leader_with_negative_time_left(make_elector: ElectorFactory) -> None:
    """status() decided the role from one reading of the clock and computed valid_for from
    another: a read just at the deadline said "leader" with a negative valid_for. Here the
    second reading is made to fall a minute later."""
    elector = make_elector("solo").start()
    assert elector.wait_elected(10)
    clock = elector._clock
    elector._clock = lambda: clock() + 60
    try:
        status = elector.status()
    finally:
        elector._clock = clock
    assert status["role"] == "leader"
    assert status["valid_for"] > 0


def test_metrics_count_terms_demotions_and_renewals(make_elector: ElectorFactory) -> None:
    from leaderelect.metrics import instrument

    registry = prometheus_client.CollectorRegistry()
    elector = make_elector()
    instrument(elector, registry)

    def value(metric: str, **labels: str) -> float | None:
        found: float | None = registry.get_sample_value(metric, {"election": elector.name, **labels})
        return found

    assert value("leaderelect_is_leader") == 0.0
    elector.start()
    assert elector.wait_elected(5)
    assert wait_until(lambda: value("leaderelect_is_leader") == 1.0, 5)
    assert value("leaderelect_elections_total") == 1.0
    # ttl 2 renews every ~0.67 s; each renewal's round trip lands in the histogram
    assert wait_until(lambda: (value("leaderelect_keepalive_seconds_count") or 0) >= 2, 5)
    assert 0 < (value("leaderelect_keepalive_seconds_sum") or 0) < 1
    assert elector.resign()
    assert wait_until(lambda: value("leaderelect_demotions_total", reason="resigned") == 1.0, 5)
    assert elector.wait_elected(5)
    assert wait_until(lambda: value("leaderelect_elections_total") == 2.0, 5)
    assert value("leaderelect_is_leader") == 1.0
    assert value("leaderelect_reconnects_total") == 0.0


def test_metrics_count_reconnects_after_an_etcd_restart(fresh_etcd: Any, name: str) -> None:
    from leaderelect import LeaderElector
    from leaderelect.metrics import instrument

    registry = prometheus_client.CollectorRegistry()
    elector = LeaderElector(name, endpoints=fresh_etcd.endpoint, ttl=3)
    instrument(elector, registry)
    with elector:
        assert elector.wait_elected(5)
        # Down for longer than a renewal period (ttl/3 = 1 s), so a renewal must meet it down.
        # A quick restart could fall between two renewals, and the session's calls (which the
        # metric counts) would never fail: gRPC reconnects the channel by itself (seen in CI).
        fresh_etcd.kill()
        time.sleep(1.5)
        fresh_etcd.start()
        reconnects = {"election": name}
        assert wait_until(lambda: (registry.get_sample_value("leaderelect_reconnects_total", reconnects) or 0) >= 1, 15)
        assert elector.wait_elected(15)


def test_metrics_hooks_leave_a_shared_session_with_their_elector(etcd: Any, name: str) -> None:
    """instrument() hooked the session itself: after the elector stopped, a shared session
    went on counting its renewals (and reconnects) for the stopped elector for ever."""
    import time

    from leaderelect import LeaderElector, Session
    from leaderelect.metrics import instrument

    registry = prometheus_client.CollectorRegistry()
    with Session(etcd.endpoint, ttl=2) as session:
        elector = LeaderElector(name, session=session)
        instrument(elector, registry)
        elector.start()

        def renewals() -> float:
            return registry.get_sample_value("leaderelect_keepalive_seconds_count", {"election": name}) or 0.0

        assert wait_until(lambda: renewals() >= 2, 5)
        elector.stop()
        counted = renewals()
        time.sleep(2)  # about three more renewals of the shared lease
        assert session.lease is not None
        assert renewals() == counted


def test_no_stats_hook_runs_after_stop_returned(etcd: Any, name: str) -> None:
    """A renewal of a shared session copied the hooks, and ran them after the elector's
    stop() had detached them and returned: one more count for a stopped elector. Here a
    hook holds on until stop() returned (or 2 s): stop() must wait for it."""
    import threading

    from leaderelect import LeaderElector, Session

    calls: list[float] = []
    armed = threading.Event()
    entered = threading.Event()
    stop_returned = threading.Event()

    def hook(event: str, seconds: float) -> None:
        if event == "keepalive" and armed.is_set() and not entered.is_set():
            entered.set()
            stop_returned.wait(2)
        calls.append(seconds)

    with Session(etcd.endpoint, ttl=2) as session:
        elector = LeaderElector(name, session=session)
        elector.add_stats_hook(hook)
        elector.start()
        try:
            assert wait_until(lambda: calls, 5)
            armed.set()
            assert entered.wait(5)
        finally:
            elector.stop()
        counted = len(calls)
        stop_returned.set()
        time.sleep(0.5)
        assert session.lease is not None  # the session renews on
        assert len(calls) == counted
