"""One connection to one etcd member, and what a watch stream needs of the client that owns it.

Under both ``client`` (unary calls, failover, authentication) and ``watchmux`` (a connection's
watches on one stream): the stream talks to its client only through :class:`StreamHost`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TypeVar, cast

import grpc
from google.protobuf.message import Message

from leaderelect.exceptions import EtcdError

R = TypeVar("R", bound=Message)


@dataclass(frozen=True)
class Endpoint:
    """One etcd member's gRPC address."""

    host: str
    port: int

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.target


class Conn:
    """One channel to one endpoint, with its method handles."""

    def __init__(self, endpoint: Endpoint, channel: grpc.Channel) -> None:
        self.endpoint = endpoint
        self.channel = channel
        self._handles: dict[str, Any] = {}

    def unary(self, path: str, response: type[R]) -> Callable[..., R]:
        return cast(Callable[..., R], self._handle(self.channel.unary_unary, path, response))

    def stream(self, path: str, response: type[R]) -> Callable[..., Any]:
        return cast(Callable[..., Any], self._handle(self.channel.stream_stream, path, response))

    def _handle(self, make: Callable[..., Any], path: str, response: type[R]) -> Any:
        """The channel's callable for *path*, made once (grpc handles are reusable)."""
        handle = self._handles.get(path)
        if handle is None:
            handle = make(path, request_serializer=_serialize, response_deserializer=response.FromString)
            self._handles[path] = handle
        return handle


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class StreamHost(Protocol):
    """What a watch stream asks of the client whose connection it runs on."""

    def current(self) -> Conn:
        """The connection in use now."""

    def metadata(self, conn: Conn) -> tuple[tuple[str, str], ...]:
        """Call metadata for *conn* (the auth token, require-leader)."""

    def closed_channel_is_unavailable(self, conn: Conn, what: str) -> contextlib.AbstractContextManager[None]:
        """Translate a call on a channel a failover just closed into a retryable error."""

    def failover(self, conn: Conn) -> None:
        """*conn*'s member failed: move to the next."""

    def translate(self, err: grpc.RpcError, conn: Conn, what: str, deadline: float | None = None) -> EtcdError:
        """The leaderelect error for a gRPC error on *conn* (failing over where it should)."""

    def forget_token(self, stale: str | None) -> None:
        """The auth token *stale* was refused: authenticate anew on the next call."""
