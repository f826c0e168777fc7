"""Building an elector from a python-etcd3 client a user already holds (the ``etcd3`` extra)."""

from __future__ import annotations

from typing import Any

import pytest

from leaderelect import ConfigurationError, LeaderElector
from leaderelect.testing import EtcdServer, wait_until
from tests.certs import make_certs
from tests.integration.test_security import _etcdctl

etcd3 = pytest.importorskip("etcd3")


def _host_port(server: EtcdServer) -> tuple[str, int]:
    host, port = server.endpoint.rsplit(":", 1)
    return host, int(port)


def test_plain_client(etcd: EtcdServer, name: str, etcd3_client: Any) -> None:
    elector = LeaderElector.from_etcd3_client(etcd3_client, name, "from-etcd3", ttl=2)
    with elector:
        assert elector.wait_elected(5)
        values = [v for v, _ in etcd3_client.get_prefix(name + "/")]
        assert values == [b"from-etcd3"]
    etcd3_client.close()  # the elector had its own connection; closing the client is harmless


def test_tls_client_with_client_certificate(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    server_paths, client_paths = make_certs(tmp_path_factory.mktemp("certs"))
    with EtcdServer(tls=server_paths) as server:
        host, port = _host_port(server)
        client = etcd3.client(
            host=host, port=port, ca_cert=client_paths.ca, cert_cert=client_paths.cert, cert_key=client_paths.key
        )
        client.put(name + "-probe", "x")  # the client itself works over TLS
        with LeaderElector.from_etcd3_client(client, name, ttl=2) as elector:
            assert elector.wait_elected(10)  # the server speaks TLS only, with client certificates
        client.close()


def test_authenticated_client_needs_the_password_again(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    # python-etcd3 sends its token as call credentials, which gRPC allows over TLS only
    server_paths, paths = make_certs(tmp_path_factory.mktemp("certs"))
    with EtcdServer(tls=server_paths) as server:
        tls = ["--endpoints", f"https://{server.endpoint}", "--cacert", paths.ca, "--cert", paths.cert]
        _etcdctl(server, *tls, "--key", paths.key, "user", "add", "root:rootpw")
        _etcdctl(server, *tls, "--key", paths.key, "auth", "enable")
        host, port = _host_port(server)
        client = etcd3.client(
            host=host,
            port=port,
            ca_cert=paths.ca,
            cert_cert=paths.cert,
            cert_key=paths.key,
            user="root",
            password="rootpw",
        )
        with pytest.raises(ConfigurationError, match="pass user= and password="):
            LeaderElector.from_etcd3_client(client, name)
        with LeaderElector.from_etcd3_client(client, name, user="root", password="rootpw", ttl=2) as elector:
            assert elector.wait_elected(10)
            assert elector._session.client._token  # it authenticated on its own
            assert wait_until(lambda: len(list(client.get_prefix(name + "/"))) == 1, 5)
        client.close()


def test_settings_that_come_from_the_client_are_refused(etcd3_client: Any, name: str) -> None:
    with pytest.raises(ConfigurationError, match="endpoints come from the etcd3 client"):
        LeaderElector.from_etcd3_client(etcd3_client, name, endpoints="127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="expected a client from python3-etcd3"):
        LeaderElector.from_etcd3_client(object(), name)
