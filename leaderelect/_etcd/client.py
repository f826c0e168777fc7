"""A small etcd v3 client: just the calls leaderelect needs, each with its own deadline.

Why our own: the ``etcd3`` module on PyPI fails to import on protobuf >= 4, and its forks
mark their only endpoint failed for 300 s after one timeout and have no per-call deadline
(see docs/facts.md). Here every unary call carries a deadline, a call that fails with
UNAVAILABLE or DEADLINE_EXCEEDED moves the client to the next endpoint, and streams are
watched by transport keepalive *and* by an application-level progress probe.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, cast

import grpc
from google.protobuf.message import Message

from leaderelect._etcd import etcd_pb2 as pb
from leaderelect._etcd.connection import Conn, Endpoint, R
from leaderelect._etcd.watchmux import Subscription, WatchMux
from leaderelect.exceptions import EtcdError, EtcdUnavailableError, LeaseExpiredError

log = logging.getLogger(__name__)

_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
# These point at the endpoint, not the request: try the next one.
_FAILOVER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# etcd's words for a token that is gone (server restart, TTL) or predates an auth change.
_AUTH_RETRY = ("invalid auth token", "revision of auth store is old", "user name is empty")

# etcd rejects requests on a member without a leader instead of letting them hang
# (what Go's clientv3.WithRequireLeader sends); needed for watches on a partitioned member.
_REQUIRE_LEADER = ("hasleader", "true")


@dataclass(frozen=True)
class TLSFiles:
    """PEM contents for a TLS connection (read once, at construction)."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    #: prebuilt channel credentials (e.g. taken from a python-etcd3 client) instead of files
    credentials: grpc.ChannelCredentials | None = None


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with *prefix*."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


class EtcdClient:
    """Thread-safe; one channel at a time, to the current endpoint.

    :param endpoints: members to use, tried in order, moving on after a failure.
    :param call_timeout: default deadline of each unary call, in seconds.
    :param keepalive_time: seconds between transport pings (None disables them); keep it at
        or above etcd's ``--grpc-keepalive-min-time`` (5 s by default) or etcd answers
        with GOAWAY ``too_many_pings``.
    :param keepalive_timeout: seconds to wait for a ping's answer before the connection
        is declared dead.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        tls: TLSFiles | None = None,
        user: str | None = None,
        password: str | None = None,
        call_timeout: float = 2.0,
        keepalive_time: float | None = 6.0,
        keepalive_timeout: float = 2.0,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self.endpoints = list(endpoints)
        self.call_timeout = call_timeout
        self._tls = tls
        self._user = user
        self._password = password
        self._keepalive_time = keepalive_time
        self._keepalive_timeout = keepalive_timeout
        self._lock = threading.Lock()
        self._auth_lock = threading.Lock()
        self._conn: Conn | None = None
        self._index = 0
        self._token: str | None = None
        self._closed = False
        #: how often the client moved to another endpoint or reconnected (for status())
        self.reconnects = 0
        self._watches = WatchMux(self)
        #: called with the endpoint just left after each failover or reconnect, on the
        #: failing call's thread; must be quick (metrics, the shared observer following)
        self.failover_hooks: list[Callable[[Endpoint], None]] = []

    def identity(self) -> tuple[object, ...]:
        """What makes two clients reach etcd the same way (see :meth:`clone`)."""
        targets = tuple(endpoint.target for endpoint in self.endpoints)
        return (targets, self._tls, self._user, self._password, self._keepalive_time, self.call_timeout)

    def clone(self) -> EtcdClient:
        """A new client with the same endpoints, TLS, credentials and timeouts."""
        return EtcdClient(
            self.endpoints,
            tls=self._tls,
            user=self._user,
            password=self._password,
            call_timeout=self.call_timeout,
            keepalive_time=self._keepalive_time,
            keepalive_timeout=self._keepalive_timeout,
        )

    # -- connection management ---------------------------------------------------------

    def _options(self) -> list[tuple[str, Any]]:
        opts: list[tuple[str, Any]] = [
            # Reconnect quickly after an etcd restart: gRPC's default backoff grows to 120 s.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.enable_http_proxy", 0),
            ("grpc.enable_retries", 0),
        ]
        if self._keepalive_time:
            timeout_ms = int(self._keepalive_timeout * 1000)
            opts += [
                ("grpc.keepalive_time_ms", int(self._keepalive_time * 1000)),
                ("grpc.keepalive_timeout_ms", timeout_ms),
                # Without this a frozen or blackholed etcd went unnoticed for 60 s (docs/facts.md).
                ("grpc.http2.ping_timeout_ms", timeout_ms),
                # etcd's enforcement policy does not permit pings without an active call: such
                # pings earn strikes, then a GOAWAY "too_many_pings" that drops every stream on
                # the connection (seen in `make bench` from a client between watches). Idle
                # connections are checked by the next call's own deadline instead.
                ("grpc.keepalive_permit_without_calls", 0),
                ("grpc.http2.max_pings_without_data", 0),
            ]
        return opts

    def current(self) -> Conn:
        with self._lock:
            if self._closed:
                raise EtcdUnavailableError("the etcd client is closed", code="CANCELLED")
            if self._conn is None:
                endpoint = self.endpoints[self._index % len(self.endpoints)]
                if self._tls is not None:
                    creds = self._tls.credentials or grpc.ssl_channel_credentials(
                        root_certificates=self._tls.ca,
                        private_key=self._tls.key,
                        certificate_chain=self._tls.cert,
                    )
                    channel = grpc.secure_channel(endpoint.target, creds, self._options())
                else:
                    channel = grpc.insecure_channel(endpoint.target, self._options())
                self._conn = Conn(endpoint, channel)
                log.debug("etcd channel to %s", endpoint)
            return self._conn

    def failover(self, conn: Conn) -> None:
        """Drop *conn* (if still current) and move to the next endpoint."""
        with self._lock:
            if self._conn is not conn:
                return
            self._conn = None
            self._index += 1
            self.reconnects += 1
        for hook in list(self.failover_hooks):
            try:
                hook(conn.endpoint)
            except BaseException:  # a user's hook (metrics) must not escape into our threads
                log.exception("failover hook failed")
        # Closing cancels calls still running on it; they are retried on the new channel.
        conn.channel.close()
        if len(self.endpoints) > 1:
            nxt = self.endpoints[self._index % len(self.endpoints)]
            log.info("etcd endpoint %s failed; moving to %s", conn.endpoint, nxt)

    def leave_endpoint(self, endpoint: Endpoint) -> None:
        """Move on if connected to *endpoint*: another client of ours just found it failing."""
        with self._lock:
            conn = self._conn
        if conn is not None and conn.endpoint == endpoint:
            self.failover(conn)

    @contextlib.contextmanager
    def closed_channel_is_unavailable(self, conn: Conn, what: str) -> Iterator[None]:
        """A call on a channel that another thread's failover just closed: retryable, not a bug.

        grpcio raises ValueError("Cannot invoke RPC on closed channel!") there; the chaos
        harness found it silently ending an observer thread.
        """
        try:
            yield
        except ValueError as err:
            if "closed" not in str(err).lower():
                raise
            self.failover(conn)  # no-op if it is not the current channel any more
            raise EtcdUnavailableError(f"{what} at {conn.endpoint}: channel closed", code="CANCELLED") from err

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        self._watches.close()  # before the channel: its readers end quietly, and are waited for
        if conn is not None:
            conn.channel.close()

    @property
    def current_endpoint(self) -> Endpoint:
        with self._lock:
            return self.endpoints[self._index % len(self.endpoints)]

    # -- authentication -----------------------------------------------------------------

    def metadata(self, conn: Conn) -> tuple[tuple[str, str], ...]:
        if self._user is None:
            return (_REQUIRE_LEADER,)
        token = self._token or self._authenticate(conn, stale=None)
        return (_REQUIRE_LEADER, ("token", token))

    def _authenticate(self, conn: Conn, stale: str | None) -> str:
        with self._auth_lock:
            if self._token is not None and self._token != stale:
                return self._token  # another thread already refreshed it
            call = conn.unary("/etcdserverpb.Auth/Authenticate", pb.AuthenticateResponse)
            request = pb.AuthenticateRequest(name=self._user or "", password=self._password or "")
            try:
                # A failover on another thread may close *conn* meanwhile: grpcio then raises
                # ValueError, which must become a retryable EtcdError like any lost channel.
                with self.closed_channel_is_unavailable(conn, "Authenticate"):
                    response = call(request, timeout=self.call_timeout)
            except grpc.RpcError as err:
                raise self.translate(err, conn, "Authenticate") from err
            self._token = response.token
            log.debug("authenticated to etcd as %s", self._user)
            return self._token

    def forget_token(self, stale: str | None) -> None:
        """*stale* was refused where no call could retry it (a watch stream): the next call
        authenticates anew, unless another thread already did."""
        with self._auth_lock:
            if stale is not None and self._token == stale:
                self._token = None

    @staticmethod
    def _is_auth_error(err: grpc.RpcError) -> bool:
        details = (cast(grpc.Call, err).details() or "").lower()
        return any(words in details for words in _AUTH_RETRY)

    # -- error translation --------------------------------------------------------------

    def translate(self, err: grpc.RpcError, conn: Conn, what: str, deadline: float | None = None) -> EtcdError:
        """The EtcdError for *err*; moves to the next endpoint when *err* blames this one.

        *deadline* is the one the call ran with: running out of a deadline that the caller
        cut short (a call made with the lease's last milliseconds) says nothing about the
        endpoint, and leaving a healthy member for it resynced every observer on it.
        """
        call = cast(grpc.Call, err)
        code = call.code()
        message = f"{what} at {conn.endpoint}: {code.name}: {call.details()}"
        short = deadline is not None and deadline < self.call_timeout
        if code in _FAILOVER and not (code == grpc.StatusCode.DEADLINE_EXCEEDED and short):
            self.failover(conn)
        if code in _RETRYABLE:
            return EtcdUnavailableError(message, code=code.name)
        if code == grpc.StatusCode.NOT_FOUND and "lease not found" in (call.details() or ""):
            return LeaseExpiredError(message, code=code.name)
        return EtcdError(message, code=code.name)

    # -- unary calls --------------------------------------------------------------------

    def _unary(self, path: str, request: Message, response: type[R], timeout: float | None) -> R:
        deadline = self.call_timeout if timeout is None else timeout
        what = path.rsplit("/", 1)[-1]
        for attempt in (1, 2):
            conn = self.current()
            metadata = self.metadata(conn)
            try:
                with self.closed_channel_is_unavailable(conn, what):
                    return conn.unary(path, response)(request, timeout=deadline, metadata=metadata)
            except grpc.RpcError as err:
                if attempt == 1 and self._user is not None and self._is_auth_error(err):
                    self._authenticate(conn, stale=dict(metadata).get("token"))
                    continue
                raise self.translate(err, conn, what, deadline) from err
        raise AssertionError("unreachable")  # pragma: no cover

    def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        limit: int = 0,
        sort_target: int = pb.RangeRequest.KEY,
        sort_order: int = pb.RangeRequest.NONE,
        max_create_revision: int = 0,
        timeout: float | None = None,
    ) -> pb.RangeResponse:
        request = pb.RangeRequest(
            key=key,
            range_end=range_end,
            limit=limit,
            sort_target=cast(Any, sort_target),
            sort_order=cast(Any, sort_order),
            max_create_revision=max_create_revision,
        )
        return self._unary("/etcdserverpb.KV/Range", request, pb.RangeResponse, timeout)

    def put(self, key: bytes, value: bytes, *, lease: int = 0, timeout: float | None = None) -> pb.PutResponse:
        request = pb.PutRequest(key=key, value=value, lease=lease)
        return self._unary("/etcdserverpb.KV/Put", request, pb.PutResponse, timeout)

    def delete(self, key: bytes, range_end: bytes = b"", *, timeout: float | None = None) -> pb.DeleteRangeResponse:
        request = pb.DeleteRangeRequest(key=key, range_end=range_end)
        return self._unary("/etcdserverpb.KV/DeleteRange", request, pb.DeleteRangeResponse, timeout)

    def txn(
        self,
        compare: Sequence[pb.Compare],
        success: Sequence[pb.RequestOp],
        failure: Sequence[pb.RequestOp] = (),
        *,
        timeout: float | None = None,
    ) -> pb.TxnResponse:
        request = pb.TxnRequest(compare=compare, success=success, failure=failure)
        return self._unary("/etcdserverpb.KV/Txn", request, pb.TxnResponse, timeout)

    def lease_grant(self, ttl: int, *, timeout: float | None = None) -> tuple[int, int]:
        """Grant a lease; returns ``(id, granted ttl)`` (etcd may raise a small ttl)."""
        request = pb.LeaseGrantRequest(TTL=ttl)
        response = self._unary("/etcdserverpb.Lease/LeaseGrant", request, pb.LeaseGrantResponse, timeout)
        if response.error:
            raise EtcdError(f"LeaseGrant: {response.error}")
        return response.ID, response.TTL

    def lease_revoke(self, lease_id: int, *, timeout: float | None = None) -> None:
        request = pb.LeaseRevokeRequest(ID=lease_id)
        self._unary("/etcdserverpb.Lease/LeaseRevoke", request, pb.LeaseRevokeResponse, timeout)

    def lease_time_to_live(self, lease_id: int, *, timeout: float | None = None) -> int:
        """Remaining TTL in seconds, -1 if the lease does not exist."""
        request = pb.LeaseTimeToLiveRequest(ID=lease_id)
        path = "/etcdserverpb.Lease/LeaseTimeToLive"
        return self._unary(path, request, pb.LeaseTimeToLiveResponse, timeout).TTL

    def lease_keepalive(self, lease_id: int, *, timeout: float | None = None, budget: bool = False) -> int:
        """Renew once; returns the new TTL (0 when the lease already expired).

        A short stream per renewal, so each renewal has its own deadline and a dead
        connection can never hold a renewal past it. With *budget*, *timeout* is what the
        caller allows a healthy member to take (not a deadline cut short by circumstance):
        running out of it moves to the next endpoint, so that the retry reaches another
        member while the lease still has time.
        """
        deadline = self.call_timeout if timeout is None else timeout
        conn = self.current()
        metadata = self.metadata(conn)
        handle = conn.stream("/etcdserverpb.Lease/LeaseKeepAlive", pb.LeaseKeepAliveResponse)
        with self.closed_channel_is_unavailable(conn, "LeaseKeepAlive"):
            call = handle(iter([pb.LeaseKeepAliveRequest(ID=lease_id)]), timeout=deadline, metadata=metadata)
        try:
            for response in call:
                return int(response.TTL)
        except grpc.RpcError as err:
            if self._user is not None and self._is_auth_error(err):
                self._authenticate(conn, stale=dict(metadata).get("token"))
            raise self.translate(err, conn, "LeaseKeepAlive", None if budget else deadline) from err
        finally:
            call.cancel()
        raise EtcdUnavailableError(f"LeaseKeepAlive at {conn.endpoint}: stream closed early")

    def watch(self, key: bytes, range_end: bytes, start_revision: int, *, probe_interval: float) -> Subscription:
        """Watch from *start_revision* on the client's shared stream; iterate the result for
        responses (it raises :class:`EtcdError` when the stream fails; ``cancel()`` ends it)."""
        create = pb.WatchCreateRequest(key=key, range_end=range_end, start_revision=start_revision)
        return self._watches.watch(create, probe_interval)
