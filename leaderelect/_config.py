"""Validation of settings: every bad input becomes a ConfigurationError at construction."""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from leaderelect._etcd import Endpoint, TLSFiles
from leaderelect.exceptions import ConfigurationError

DEFAULT_ENDPOINTS = "127.0.0.1:2379"
MIN_TTL = 2  # etcd raises a smaller request to its 2 s minimum (docs/facts.md)
MAX_TTL = 9_000_000_000  # etcd's MaxLeaseTTL


def check_name(name: Any) -> str:
    """An election name: non-empty text without control characters, not ending in '/'."""
    if not isinstance(name, str):
        raise ConfigurationError(f"election name must be a str, not {type(name).__name__}")
    if not name.strip():
        raise ConfigurationError("election name must not be empty")
    if name.endswith("/"):
        raise ConfigurationError(f"election name {name!r} must not end with '/' (the key separator)")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise ConfigurationError(f"election name {name!r} contains control characters")
    if len(name.encode()) > 1024:
        raise ConfigurationError("election name is longer than 1024 bytes")
    return name


def check_value(value: Any) -> bytes:
    if value is None:
        return f"{socket.gethostname()}:{os.getpid()}".encode()
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise ConfigurationError(f"value must be str or bytes, not {type(value).__name__}")


def check_ttl(ttl: Any) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise ConfigurationError(f"ttl must be a whole number of seconds, not {ttl!r}")
    if isinstance(ttl, float) and not ttl.is_integer():
        raise ConfigurationError(f"ttl must be whole seconds (etcd leases are), not {ttl!r}")
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise ConfigurationError(f"ttl must be between {MIN_TTL} and {MAX_TTL} seconds, not {ttl!r}")
    return int(ttl)


def default_guard(ttl: int) -> float:
    return max(0.5, 0.1 * ttl)


_unsafe_guard = contextvars.ContextVar("leaderelect_unsafe_guard", default=False)


@contextlib.contextmanager
def allowing_unsafe_guard() -> Iterator[None]:
    """Within this block (in this thread or task only), a negative ``guard`` is accepted: a
    test-only knob, not part of any signature, that the chaos checker's negative control
    uses to prove the checker can fail."""
    reset = _unsafe_guard.set(True)
    try:
        yield
    finally:
        _unsafe_guard.reset(reset)


def check_guard(ttl: int, guard: Any) -> float:
    """The safety margin subtracted from the lease's expiry on the local clock.

    It must leave room for at least one renewal (renewals go every ttl/3), so it is
    below 2/3 of the ttl; never negative (but see :func:`allowing_unsafe_guard`).
    """
    if guard is None:
        return default_guard(ttl)
    value = check_number("guard", guard, allow_zero=True, allow_negative=_unsafe_guard.get())
    if value >= ttl * 2 / 3:
        raise ConfigurationError(
            f"guard {value} s leaves no renewal window in a {ttl} s lease "
            f"(renewals go every {ttl / 3:.2f} s; keep guard below {ttl * 2 / 3:.2f} s)"
        )
    return value


def check_number(what: str, value: Any, *, allow_zero: bool = False, allow_negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{what} must be a finite number of seconds, not {value!r}")
    if value < 0 and not allow_negative:
        raise ConfigurationError(f"{what} must not be negative, not {value!r}")
    if value == 0 and not allow_zero:
        raise ConfigurationError(f"{what} must be positive, not {value!r}")
    return float(value)


def parse_endpoints(endpoints: Any) -> tuple[list[Endpoint], bool]:
    """Parse ``"host:port,host:port"`` or a sequence of them.

    Returns the endpoints and whether any used ``https://`` (which implies TLS).
    """
    if endpoints is None:
        endpoints = DEFAULT_ENDPOINTS
    if isinstance(endpoints, str):
        items: Sequence[Any] = [part for part in endpoints.split(",") if part.strip()]
    elif isinstance(endpoints, (list, tuple)):
        items = endpoints
    else:
        raise ConfigurationError(f"endpoints must be a str or a list of str, not {type(endpoints).__name__}")
    if not items:
        raise ConfigurationError("endpoints must name at least one etcd member")
    parsed: list[Endpoint] = []
    https = False
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"endpoint {item!r} is not a str")
        text = item.strip()
        if text.startswith("https://"):
            https, text = True, text[len("https://") :]
        elif text.startswith("http://"):
            text = text[len("http://") :]
        text = text.rstrip("/")
        host, sep, port_text = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigurationError(f"endpoint {item!r} is not host:port (for example 127.0.0.1:2379)")
        if any(ch.isspace() or ch in "/?#@" for ch in host):
            raise ConfigurationError(f"endpoint {item!r} has an invalid host")
        parsed.append(Endpoint(host, int(port_text)))
    return parsed, https


def read_tls(ca: Any, cert: Any, key: Any, *, https: bool, credentials: Any = None) -> TLSFiles | None:
    """Read PEM files now, so a missing or unreadable file is an error at construction."""
    if credentials is not None:
        if ca is not None or cert is not None or key is not None:
            raise ConfigurationError("give tls_credentials or tls_ca/tls_cert/tls_key, not both")
        if not isinstance(credentials, grpc.ChannelCredentials):
            kind = type(credentials).__name__
            raise ConfigurationError(f"tls_credentials must be grpc.ChannelCredentials, not {kind}")
        return TLSFiles(credentials=credentials)
    if (cert is None) != (key is None):
        raise ConfigurationError("tls_cert and tls_key go together: give both or neither")
    if ca is None and cert is None and not https:
        return None

    def read(what: str, path: Any) -> bytes | None:
        if path is None:
            return None
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigurationError(f"{what} must be a file path, not {path!r}")
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as err:
            raise ConfigurationError(f"{what} {os.fspath(path)!r} cannot be read: {err.strerror}") from err
        if b"-----BEGIN" not in data:
            raise ConfigurationError(f"{what} {os.fspath(path)!r} is not a PEM file")
        return data

    return TLSFiles(ca=read("tls_ca", ca), cert=read("tls_cert", cert), key=read("tls_key", key))


def check_credentials(user: Any, password: Any) -> tuple[str | None, str | None]:
    if user is None and password is None:
        return None, None
    if not isinstance(user, str) or not user:
        raise ConfigurationError("user must be a non-empty str when a password is given")
    if not isinstance(password, str):
        raise ConfigurationError("password must be a str when a user is given")
    return user, password
