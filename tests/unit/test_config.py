"""Every bad input is a ConfigurationError (a ValueError) at construction."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest

from leaderelect import ConfigurationError, LeaderElector, Session, Settings
from leaderelect._config import allowing_unsafe_guard, check_guard, default_guard, parse_endpoints
from leaderelect.settings import ConnectionOptions, SessionOptions

BAD = [
    ({"name": ""}, "must not be empty"),
    ({"name": "   "}, "must not be empty"),
    ({"name": "jobs/"}, "must not end with '/'"),
    ({"name": "a\nb"}, "control characters"),
    ({"name": 42}, "must be a str"),
    ({"name": "x" * 2000}, "longer than 1024"),
    ({"ttl": 1}, "between 2 and"),
    ({"ttl": 0}, "between 2 and"),
    ({"ttl": 2.5}, "whole seconds"),
    ({"ttl": True}, "whole number"),
    ({"ttl": "10"}, "whole number"),
    ({"ttl": 3, "guard": 2.0}, "no renewal window"),
    ({"ttl": 10, "guard": -1}, "must not be negative"),
    ({"guard": float("nan")}, "finite"),
    ({"call_timeout": 0}, "must be positive"),
    ({"call_timeout": -1.0}, "must not be negative"),
    ({"demote_timeout": -1}, "must not be negative"),
    ({"endpoints": ""}, "at least one"),
    ({"endpoints": "localhost"}, "host:port"),
    ({"endpoints": "127.0.0.1:abc"}, "host:port"),
    ({"endpoints": "127.0.0.1:70000"}, "host:port"),
    ({"endpoints": ":2379"}, "host:port"),
    ({"endpoints": 2379}, "must be a str"),
    ({"endpoints": ["127.0.0.1:2379", None]}, "is not a str"),
    ({"value": 12}, "str or bytes"),
    ({"tls_cert": "/nonexistent/cert.pem"}, "go together"),
    ({"tls_ca": "/nonexistent/ca.pem"}, "cannot be read"),
    ({"tls_credentials": "ca.pem"}, "must be grpc.ChannelCredentials"),
    ({"tls_credentials": grpc.ssl_channel_credentials(), "tls_ca": "ca.pem"}, "not both"),
    ({"user": "root"}, "password must be a str"),
    ({"password": "secret"}, "user must be a non-empty str"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD, ids=[str(b[0])[:50] for b in BAD])
def test_bad_settings_raise_configuration_error(overrides: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {"name": "jobs", "endpoints": "127.0.0.1:1"}
    kwargs.update(overrides)
    with pytest.raises(ConfigurationError, match=message) as info:
        LeaderElector(kwargs.pop("name"), **kwargs)
    assert isinstance(info.value, ValueError)


def test_tls_file_that_is_not_pem(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("hello")
    with pytest.raises(ConfigurationError, match="not a PEM file"):
        LeaderElector("jobs", tls_ca=str(bogus))


def test_non_callable_callback() -> None:
    elector = LeaderElector("jobs", endpoints="127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="needs a callable"):
        elector.on_elected("not a function")  # type: ignore[type-var]
    elector.stop()


def test_session_settings_belong_to_the_session() -> None:
    session = Session("127.0.0.1:1", ttl=5)
    with pytest.raises(ConfigurationError, match="ttl belong to the shared session"):
        LeaderElector("jobs", session=session, ttl=3)
    with pytest.raises(ConfigurationError, match=r"must be a leaderelect\.Session"):
        LeaderElector("jobs", session="127.0.0.1:2379")  # type: ignore[arg-type]
    session.close()


def test_endpoints_parse() -> None:
    endpoints, https = parse_endpoints("http://127.0.0.1:2379, 10.0.0.2:2379,[::1]:2380")
    assert [e.target for e in endpoints] == ["127.0.0.1:2379", "10.0.0.2:2379", "[::1]:2380"]
    assert not https
    assert parse_endpoints(["https://etcd.example:2379"])[1]


@pytest.mark.parametrize(("ttl", "guard"), [(2, 0.5), (5, 0.5), (10, 1.0), (60, 6.0)])
def test_default_guard(ttl: int, guard: float) -> None:
    assert default_guard(ttl) == guard
    assert check_guard(ttl, None) == guard


def test_negative_guard_only_through_the_test_knob() -> None:
    with pytest.raises(ConfigurationError):
        check_guard(2, -0.5)
    with allowing_unsafe_guard():
        assert check_guard(2, -0.5) == -0.5
    with pytest.raises(ConfigurationError):  # only inside the block
        check_guard(2, -0.5)


def test_the_test_only_knobs_are_not_in_the_public_signatures() -> None:
    import inspect

    for cls in (LeaderElector, Session):
        params = inspect.signature(cls).parameters
        assert "clock" not in params and not [p for p in params if p.startswith("_")], cls


def test_good_settings_construct_without_network() -> None:
    elector = LeaderElector("jobs/eu-west", b"raw", endpoints=["127.0.0.1:1", "127.0.0.1:2"], ttl=2, guard=0.3)
    assert elector.ttl == 2
    assert not elector.is_leader
    assert elector.leader is None
    elector.stop()
    elector.stop()  # idempotent


def test_settings_have_one_home() -> None:
    # the keywords type checkers see are exactly the documented fields, and stay so
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert set(ConnectionOptions.__optional_keys__) == fields
    assert set(SessionOptions.__optional_keys__) == fields - {"endpoints"}
    # the settings in force: as given, defaults filled in
    session = Session(["127.0.0.1:1"], ttl=5, guard=None, keepalive_time=None)
    assert session.settings == Settings(endpoints=("127.0.0.1:1",), ttl=5, guard=0.5, keepalive_time=None)
    hash(session.settings)  # frozen values, lists kept as tuples
    session.close()
    # an elector without a session passes its settings on; None takes the default
    elector = LeaderElector("jobs", ttl=None, call_timeout=0.5)
    assert elector.session.settings == Settings(endpoints="127.0.0.1:2379", guard=1.0, call_timeout=0.5)
    assert elector.ttl == 10
    elector.stop()


def test_unknown_setting_is_named() -> None:
    with pytest.raises(TypeError, match="unknown setting keepalive; the settings are endpoints, ttl"):
        LeaderElector("jobs", endpoints="127.0.0.1:1", keepalive=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"unknown setting demote_timout; .*; also value, session, demote_timeout"):
        LeaderElector("jobs", endpoints="127.0.0.1:1", demote_timout=3)  # type: ignore[call-arg]
    session = Session("127.0.0.1:1")
    with pytest.raises(TypeError, match="unknown setting tls"):
        LeaderElector("jobs", session=session, tls="x")  # type: ignore[call-arg]
    session.close()


def test_keepalive_belongs_to_the_shared_session_too() -> None:
    # it was accepted and silently ignored beside a shared session
    session = Session("127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="keepalive_time belong to the shared session"):
        LeaderElector("jobs", session=session, keepalive_time=None)
    session.close()
