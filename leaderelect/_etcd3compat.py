"""Connection settings read off a python-etcd3 client (``python3-etcd3`` and the forks that
install the ``etcd3`` module): its endpoints and TLS credentials.

What such a client keeps: ``client.endpoints``, a dict of ``Endpoint`` objects with
``netloc``, ``secure`` and ``credentials`` (a ``grpc.ChannelCredentials``), and, with auth,
``client.metadata`` holding a token, but not the user's password.
"""

from __future__ import annotations

from typing import Any

from leaderelect.exceptions import ConfigurationError


def connection_from(client: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The constructor keywords for an elector on *client*'s etcd, merged with *kwargs*."""
    ours = ("endpoints", "session", "tls_ca", "tls_cert", "tls_key", "tls_credentials")
    given = sorted(k for k in ours if k in kwargs)
    if given:
        raise ConfigurationError(f"{', '.join(given)} come from the etcd3 client; do not pass them too")
    endpoints = getattr(client, "endpoints", None)
    if not isinstance(endpoints, dict) or not endpoints:
        raise ConfigurationError(
            f"{type(client).__name__} has no endpoints dict: expected a client from python3-etcd3 "
            "(or a fork that keeps client.endpoints), e.g. etcd3.client(host, port)"
        )
    eps = list(endpoints.values())
    secure = {bool(getattr(ep, "secure", False)) for ep in eps}
    if len(secure) != 1:
        raise ConfigurationError("the etcd3 client mixes TLS and plain endpoints")
    out = dict(kwargs)
    if secure.pop():
        creds = {id(ep.credentials): ep.credentials for ep in eps}
        if len(creds) != 1:
            raise ConfigurationError("the etcd3 client's endpoints use different TLS credentials")
        out["endpoints"] = [f"https://{ep.netloc}" for ep in eps]
        out["tls_credentials"] = next(iter(creds.values()))
    else:
        out["endpoints"] = [str(ep.netloc) for ep in eps]
    if getattr(client, "metadata", None) and (out.get("user") is None or out.get("password") is None):
        raise ConfigurationError(
            "the etcd3 client is authenticated, but it keeps only its token, which expires: "
            "pass user= and password= so the elector can authenticate on its own"
        )
    return out
