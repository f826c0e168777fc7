"""The connection and lease settings: named, defaulted and documented here, once.

A :class:`~leaderelect.Session` takes them as keywords; a :class:`~leaderelect.LeaderElector`
without a shared session passes the same keywords on to the session it makes for itself.
``session.settings`` holds the values in force (defaults filled in). Checking them (files,
numbers, endpoints) is the session's job, at construction, so every bad value is a
``ConfigurationError`` there. (The core has its own internal per-candidate tuple,
``core.base.Config``; this is the one users see.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

__all__ = ["ConnectionOptions", "SessionOptions", "Settings"]


@dataclass(frozen=True)
class Settings:
    """How a session reaches etcd and keeps its lease.

    ``None`` means "the default" for every setting but ``keepalive_time``, where it turns the
    pings off; so a configuration file's empty entry never overrides a default by accident.
    """

    #: ``"host:port,host:port"`` or a sequence of them (kept as a tuple); ``https://`` implies
    #: TLS. Default ``127.0.0.1:2379``.
    endpoints: str | Sequence[str] | None = None
    #: lease TTL in whole seconds (>= 2). Shorter means faster failover after a crash and more
    #: renewals (one every ttl/3); the leader demotes itself ``guard`` seconds before it ends.
    ttl: int = 10
    #: seconds subtracted from the lease expiry on the local clock; covers clock-rate error and
    #: scheduling slack. Default ``max(0.5, 0.1 * ttl)``; it must stay below ``2/3 ttl`` (a
    #: renewal is due at ttl/3, and the deadline must come after it).
    guard: float | None = None
    #: deadline of each etcd call, in seconds.
    call_timeout: float = 2.0
    #: CA bundle (PEM path) to verify etcd.
    tls_ca: str | None = None
    #: client certificate (PEM path); goes with ``tls_key``.
    tls_cert: str | None = None
    #: client key (PEM path); goes with ``tls_cert``.
    tls_key: str | None = None
    #: a ``grpc.ChannelCredentials`` instead of the three paths.
    tls_credentials: Any = dataclasses.field(default=None, repr=False)
    #: etcd user; the session re-authenticates when its token expires or the server restarts.
    user: str | None = None
    #: the etcd user's password.
    password: str | None = dataclasses.field(default=None, repr=False)
    #: seconds between gRPC transport pings (None turns them off); keep it at or above etcd's
    #: ``--grpc-keepalive-min-time`` (5 s by default).
    keepalive_time: float | None = 6.0

    @classmethod
    def of(cls, options: Mapping[str, Any], *, also: Sequence[str] = ()) -> Settings:
        """Settings from keywords: an unknown name is a TypeError that lists the settings
        (and *also*, the caller's other keywords); ``None`` takes the default (but turns
        ``keepalive_time`` off)."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            others = f"; also {', '.join(also)}" if also else ""
            raise TypeError(f"unknown setting {', '.join(unknown)}; the settings are {', '.join(known)}{others}")
        values = given(options)
        if isinstance(values.get("endpoints"), list):
            values["endpoints"] = tuple(values["endpoints"])  # frozen, hashable
        return cls(**values)


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords that set something: all but those left ``None`` (``keepalive_time=None``
    sets something: no pings)."""
    return {k: v for k, v in options.items() if v is not None or k == "keepalive_time"}


class SessionOptions(TypedDict, total=False):
    """The keywords :class:`~leaderelect.Session` takes after its endpoints: the fields of
    :class:`Settings` (see there), for type checkers."""

    ttl: int | None
    guard: float | None
    call_timeout: float | None
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    tls_credentials: Any
    user: str | None
    password: str | None
    keepalive_time: float | None


class ConnectionOptions(SessionOptions, total=False):
    """The keywords :class:`~leaderelect.LeaderElector` passes on to the session it makes
    for itself: every field of :class:`Settings`."""

    endpoints: str | Sequence[str] | None
