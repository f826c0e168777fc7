"""Many watches on one gRPC stream per client, as etcd's Go client does.

Why: grpcio's blocking iteration of a response stream wakes every 100 ms to check for
signals, and it did so for every elector's own stream: 100 elections on one session idled
at 3.3 % of a core. Here one reader thread iterates the one stream and hands each response
to its subscription's queue; observers block on those queues, which costs nothing while
idle.

etcd answers the create requests of one stream in the order they were sent (measured:
ids 0, 1, ... and ``created`` responses in order), so a FIFO of pending subscriptions maps
each ``created`` response to its subscription. A progress response has watch id -1 and
concerns every watch on the stream.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Callable, Union

import grpc

from leaderelect._etcd import etcd_pb2 as pb
from leaderelect._etcd.connection import Conn, StreamHost
from leaderelect._threads import ours
from leaderelect.exceptions import EtcdError, EtcdUnavailableError

log = logging.getLogger(__name__)

_PROGRESS_ID = -1
#: how long ending a stream waits for its reader thread (a cancelled call wakes it at once)
READER_EXIT = 2.0
_Item = Union[pb.WatchResponse, EtcdError, None]


class Subscription:
    """One watch on a shared stream. Iterate it for responses; it ends by raising
    :class:`EtcdError` when the stream fails, or quietly after :meth:`cancel`."""

    def __init__(self, stream: _Stream, create: pb.WatchCreateRequest) -> None:
        self._stream = stream
        self.create = create
        self.watch_id: int | None = None
        self.cancelled = False
        self._items: queue.SimpleQueue[_Item] = queue.SimpleQueue()

    def __iter__(self) -> Iterator[pb.WatchResponse]:
        while True:
            response = self.next_response()
            if response is None:
                return
            yield response

    def next_response(self, timeout: float | None = None) -> pb.WatchResponse | None:
        """The next response (None once the watch ended); raises :class:`TimeoutError` if
        none arrives within *timeout* seconds, and the stream's :class:`EtcdError` if it failed."""
        try:
            item = self._items.get(timeout=timeout)  # blocks without polling
        except queue.Empty:
            raise TimeoutError from None
        if isinstance(item, EtcdError):
            raise item
        return item

    def backlog(self) -> bool:
        """Whether more responses (or the end) are already waiting to be read."""
        return not self._items.empty()

    def cancel(self) -> None:
        self._stream.cancel(self)

    def _put(self, item: _Item) -> None:
        self._items.put(item)


class _Stream:
    """One Watch call with its reader thread; dead for good once it fails or empties."""

    def __init__(self, client: StreamHost, probe_interval: float, on_end: Callable[[_Stream], None]) -> None:
        self._client = client
        self._probe_interval = probe_interval
        self._on_end = on_end
        self._lock = threading.Lock()
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self._pending: collections.deque[Subscription] = collections.deque()
        self._active: dict[int, Subscription] = {}
        self._last_response = time.monotonic()
        self._silent = False
        self.dead = False
        self._conn: Conn = client.current()
        metadata = client.metadata(self._conn)
        self._token = dict(metadata).get("token")
        handle = self._conn.stream("/etcdserverpb.Watch/Watch", pb.WatchResponse)
        with client.closed_channel_is_unavailable(self._conn, "Watch"):
            self._call = handle(self._request_stream(), metadata=metadata)
        self._thread = threading.Thread(target=ours(self._read), name="leaderelect-watch", daemon=True)
        self._thread.start()

    # -- subscriptions ----------------------------------------------------------------------

    def add(self, create: pb.WatchCreateRequest) -> Subscription | None:
        """A new subscription, or None if this stream is dead (make a new stream)."""
        with self._lock:
            if self.dead:
                return None
            sub = Subscription(self, create)
            self._pending.append(sub)
            self._requests.put(pb.WatchRequest(create_request=create))
            return sub

    def cancel(self, sub: Subscription) -> None:
        with self._lock:
            if sub.cancelled:
                return
            sub.cancelled = True
            if sub.watch_id is not None and self._active.pop(sub.watch_id, None) is sub and not self.dead:
                self._requests.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=sub.watch_id)))
            empty = self._idle()
        sub._put(None)
        if empty:
            # Nobody left: close the stream (an idle elector set holds none), unless a watch
            # was added since the lock was let go (checked again under it).
            self._end(None, if_idle=True)

    def _idle(self) -> bool:
        """No watch is active or on its way (call it under the lock)."""
        return not self._active and not any(not s.cancelled for s in self._pending)

    # -- the stream -------------------------------------------------------------------------

    def _request_stream(self) -> Iterator[pb.WatchRequest]:
        progress = pb.WatchRequest(progress_request=pb.WatchProgressRequest())
        while True:
            try:
                item = self._requests.get(timeout=self._probe_interval)
            except queue.Empty:
                if time.monotonic() - self._last_response > 2 * self._probe_interval:
                    self._silent = True
                    self._call.cancel()
                    return
                yield progress
                continue
            if item is None:
                return
            yield item

    def _read(self) -> None:
        error: EtcdError | None = None
        try:
            for response in self._call:
                self._last_response = time.monotonic()
                self._route(response)
            error = EtcdUnavailableError(f"Watch at {self._conn.endpoint}: stream ended", code="UNAVAILABLE")
        except grpc.RpcError as err:
            if self.dead:  # we ended it (its last subscription left): nothing failed
                return
            if self._silent:
                self._client.failover(self._conn)
                error = EtcdUnavailableError(
                    f"Watch at {self._conn.endpoint}: no answer to progress requests", code="DEADLINE_EXCEEDED"
                )
            else:
                error = self._client.translate(err, self._conn, "Watch")
        except Exception as err:  # a bug must not leave subscribers waiting forever
            log.exception("watch stream reader failed")
            error = EtcdUnavailableError(f"Watch at {self._conn.endpoint}: reader failed: {err}")
        self._end(error)

    def _route(self, response: pb.WatchResponse) -> None:
        cancel_id: int | None = None
        refused: Subscription | None = None  # refused over the stream's token
        with self._lock:
            if response.created:
                sub = self._pending.popleft() if self._pending else None
                if sub is None:
                    log.warning("watch created with no subscription waiting (id %d)", response.watch_id)
                    return
                if response.canceled:  # refused (e.g. permission denied); its id is -1
                    sub.cancelled = True
                    reason = response.cancel_reason or "no reason given"
                    if not _refused_for_auth(reason):
                        sub._put(EtcdError(f"watch refused: {reason}"))
                        return
                    refused = sub
                else:
                    sub.watch_id = response.watch_id
                    if sub.cancelled:
                        cancel_id = sub.watch_id  # cancelled while its create was in flight
                    else:
                        self._active[sub.watch_id] = sub
                        sub._put(response)
            elif response.watch_id == _PROGRESS_ID:
                for sub in self._active.values():
                    sub._put(response)
            else:
                sub = self._active.get(response.watch_id)
                if sub is not None:
                    if response.canceled:
                        del self._active[response.watch_id]
                    sub._put(response)
        if refused is not None:
            # The stream's token was fixed when it opened and etcd now refuses it (it expired,
            # or users or roles changed). Kept, it would refuse every new watch while the
            # observers resynced in a loop: end it, and let the next stream authenticate anew.
            self._client.forget_token(self._token)
            error = EtcdUnavailableError(
                f"Watch at {self._conn.endpoint}: refused: {response.cancel_reason}", code="UNAUTHENTICATED"
            )
            refused._put(error)
            self._end(error)
        elif cancel_id is not None:
            self._requests.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=cancel_id)))

    def close(self) -> None:
        """End the stream (its subscriptions get an error) and wait for its reader."""
        if not self._end(EtcdUnavailableError("the etcd client is closed", code="CANCELLED")):
            self.join()  # it had ended already (maybe on its reader, which may still be finishing)

    @property
    def reader_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        """Wait (up to READER_EXIT) for the reader thread, unless called on it."""
        if self._thread is not threading.current_thread():
            self._thread.join(READER_EXIT)
            if self._thread.is_alive():
                log.warning("the watch reader for %s did not end within %.1f s", self._conn.endpoint, READER_EXIT)

    def _end(self, error: EtcdError | None, *, if_idle: bool = False) -> bool:
        """End the stream; False if it had ended already (or, *if_idle*, if it has watches)."""
        with self._lock:
            if self.dead or (if_idle and not self._idle()):
                return False
            self.dead = True
            subs = [*self._pending, *self._active.values()]
            self._pending.clear()
            self._active.clear()
        self._requests.put(None)
        self._call.cancel()
        for sub in subs:
            if not sub.cancelled:
                sub._put(error or EtcdUnavailableError("watch stream closed", code="CANCELLED"))
        self._on_end(self)
        # Ended from outside (its last subscription cancelled): return once the reader has,
        # so that an elector's stop() leaves no thread of ours running (the chaos checker
        # found one still winding down when stop() returned).
        self.join()
        return True


def _refused_for_auth(reason: str) -> bool:
    """Whether etcd refused a watch over its token rather than over the request."""
    reason = reason.lower()
    return any(words in reason for words in ("permission denied", "auth", "token", "user name is empty"))


class WatchMux:
    """The client's watches, all on one stream at a time."""

    def __init__(self, client: StreamHost) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._stream: _Stream | None = None
        #: streams whose reader may still be running (one that failed ends on its reader)
        self._streams: list[_Stream] = []

    def watch(self, create: pb.WatchCreateRequest, probe_interval: float) -> Subscription:
        for _ in range(3):  # a stream that just died is replaced; it cannot die every time
            with self._lock:
                stream = self._stream
                if stream is None or stream.dead:
                    stream = self._stream = _Stream(self._client, probe_interval, self._ended)
                    self._streams = [s for s in self._streams if s.reader_alive] + [stream]
            sub = stream.add(create)
            if sub is not None:
                return sub
        raise EtcdUnavailableError("watch streams keep ending", code="UNAVAILABLE")

    def _ended(self, stream: _Stream) -> None:
        with self._lock:
            if self._stream is stream:
                self._stream = None

    def close(self) -> None:
        """End every stream and wait for their readers (the client is closing)."""
        with self._lock:
            streams, self._streams, self._stream = self._streams, [], None
        for stream in streams:
            stream.close()
