"""TLS with client certificates, and user/password auth, against real etcd servers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leaderelect import LeaderElector
from leaderelect.testing import EtcdServer, TLSPaths, find_etcd, wait_until
from tests.certs import make_certs
from tests.conftest import leaderelect_threads


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EtcdServer, TLSPaths]]:
    server_paths, client_paths = make_certs(tmp_path_factory.mktemp("certs"))
    with EtcdServer(tls=server_paths) as server:
        yield server, client_paths


def test_tls_with_client_certificate(tls_etcd: tuple[EtcdServer, TLSPaths], name: str) -> None:
    server, paths = tls_etcd
    elector = LeaderElector(
        name,
        "tls",
        endpoints=f"https://{server.endpoint}",
        ttl=2,
        tls_ca=paths.ca,
        tls_cert=paths.cert,
        tls_key=paths.key,
    )
    with elector:
        assert elector.wait_elected(10)
        assert wait_until(lambda: elector.leader is not None and elector.leader.value == "tls", 5)


def test_tls_without_client_certificate_is_refused_and_retried(
    tls_etcd: tuple[EtcdServer, TLSPaths], name: str
) -> None:
    server, paths = tls_etcd
    before = set(leaderelect_threads())
    elector = LeaderElector(name, endpoints=f"https://{server.endpoint}", ttl=2, tls_ca=paths.ca, call_timeout=0.5)
    with elector:
        assert not elector.wait_elected(2)
    assert wait_until(lambda: set(leaderelect_threads()) <= before, 5)


def _etcdctl(server: EtcdServer, *args: str) -> None:
    subprocess.run(
        [find_etcd("etcdctl"), "--endpoints", server.endpoint, *args], check=True, capture_output=True, timeout=20
    )


@pytest.fixture
def auth_etcd() -> Iterator[EtcdServer]:
    # simple tokens expire after 1 s without use, so re-authentication is exercised for sure
    with EtcdServer(extra_args=["--auth-token-ttl", "1"]) as server:
        _etcdctl(server, "user", "add", "root:rootpw")
        _etcdctl(server, "auth", "enable")
        yield server


def test_auth_and_reauthentication_when_the_token_expires(auth_etcd: EtcdServer, name: str) -> None:
    elector = LeaderElector(
        name, "authed", endpoints=auth_etcd.endpoint, ttl=2, user="root", password="rootpw", call_timeout=0.5
    )
    with elector:
        assert elector.wait_elected(10)
        token_before = elector._session.client._token
        assert token_before
        time.sleep(2.5)  # the token expires on the server
        assert elector.proclaim("still me")  # needs a valid token: re-authenticates and retries once
        assert [c.value for c in elector.participants()] == ["still me"]
        assert elector._session.client._token not in (None, token_before)
        assert elector.is_leader


def test_auth_survives_a_server_restart(auth_etcd: EtcdServer, name: str) -> None:
    elector = LeaderElector(
        name, "authed", endpoints=auth_etcd.endpoint, ttl=2, user="root", password="rootpw", call_timeout=0.5
    )
    with elector:
        assert elector.wait_elected(10)
        auth_etcd.restart()
        # leads again by itself (or kept leading, if the restart fitted in its lease window)
        time.sleep(1)
        assert wait_until(lambda: elector.is_leader, 20)


def test_wrong_password_never_elects_and_stops_cleanly(auth_etcd: EtcdServer, name: str) -> None:
    before = set(leaderelect_threads())
    elector = LeaderElector(name, endpoints=auth_etcd.endpoint, ttl=2, user="root", password="wrong")
    with elector:
        assert not elector.wait_elected(2)
    assert wait_until(lambda: set(leaderelect_threads()) <= before, 5)


def test_unreadable_tls_file_is_a_configuration_error(tmp_path: Path, name: str) -> None:
    from leaderelect import ConfigurationError

    with pytest.raises(ConfigurationError, match="cannot be read"):
        LeaderElector(name, tls_ca=str(tmp_path / "missing.pem"))


@pytest.fixture
def short_token_etcd() -> Iterator[EtcdServer]:
    with EtcdServer(extra_args=["--auth-token-ttl", "2"]) as server:
        _etcdctl(server, "user", "add", "root:rootpw")
        _etcdctl(server, "auth", "enable")
        yield server


def test_a_watch_refused_over_a_stale_token_reopens_the_stream_without_spinning(
    short_token_etcd: EtcdServer, name: str
) -> None:
    """Electors of one process share one watch stream whose token is fixed when it opens.
    Once that token expired (2 s idle here), a new watch on it was refused with "permission
    denied", the stream was kept, and the observer resynced in a busy loop (1.35 CPU-seconds
    per 2 s) while showing the view as known."""
    auth = {"endpoints": short_token_etcd.endpoint, "ttl": 2, "user": "root", "password": "rootpw"}
    first = LeaderElector(f"{name}-a", **auth)  # type: ignore[arg-type]
    second = LeaderElector(f"{name}-b", **auth)  # type: ignore[arg-type]
    with first:
        assert first.wait_elected(10)
        time.sleep(3.5)  # the shared stream's token expires on the server
        with second:  # its watch goes on the same stream
            cpu = time.process_time()
            assert second.wait_elected(10)
            assert wait_until(lambda: second.observation.known, 5)
            time.sleep(2)
            spent = time.process_time() - cpu
            assert spent < 0.6, f"{spent:.2f} CPU-seconds in ~2 s: the observer is spinning"
            assert second.observation.known and first.observation.known
            assert second.leader is not None and second.leader.key == second.term.key  # type: ignore[union-attr]


def test_reauthenticating_on_a_channel_a_failover_just_closed_is_retryable(auth_etcd: EtcdServer) -> None:
    """grpcio raises ValueError for a call on a closed channel; from Authenticate it escaped
    as a ValueError, reached a catch-all and cost the lease."""
    from leaderelect._config import parse_endpoints
    from leaderelect._etcd import EtcdClient
    from leaderelect.exceptions import EtcdUnavailableError

    client = EtcdClient(parse_endpoints(auth_etcd.endpoint)[0], user="root", password="rootpw", call_timeout=2)
    try:
        client.current().channel.close()  # what a concurrent failover does to the channel
        with pytest.raises(EtcdUnavailableError, match="channel closed"):
            client.range(b"k")
        assert client.range(b"k").header.revision > 0  # the next call uses a new channel
    finally:
        client.close()
