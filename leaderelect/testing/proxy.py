"""A loopback TCP proxy with faults: pass, blackhole, reset, latency."""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
import time
from typing import Any


class FaultProxy:
    """A loopback TCP proxy in front of one server, with faults you switch at will.

    Modes: ``"pass"``; ``"blackhole"`` (connections stay open, nothing is forwarded,
    like a partition: data waits in the socket buffers); ``"reset"`` (every connection
    is reset, new ones too); ``latency=`` seconds added to each chunk in each direction.
    """

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self.mode = "pass"
        self.latency = 0.0
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept, "accept")

    @property
    def endpoint(self) -> str:
        """``host:port`` to give the client instead of the real endpoint."""
        return f"127.0.0.1:{self.port}"

    def _spawn(self, target: Any, what: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"faultproxy-{self.port}-{what}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def set_mode(self, mode: str, latency: float = 0.0) -> None:
        """What happens to traffic from now on: "pass", "blackhole" (held silently) or "reset"
        (connections closed); *latency*: seconds added to what passes."""
        if mode not in ("pass", "blackhole", "reset"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode, self.latency = mode, latency
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "reset":
            self._reset_all()

    def _reset_all(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            _reset(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.2)
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "reset":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                _reset(client)
                continue
            for sock in (client, upstream):  # small gRPC frames must not wait for Nagle
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks += [client, upstream]
            self._spawn(self._pump, "up", client, upstream)
            self._spawn(self._pump, "down", upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        """Read from *src* into a delay line; a writer thread sends each chunk when it is due,
        so latency is added once per chunk, not accumulated behind a queue."""
        line: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
        self._spawn(self._deliver, "deliver", line, src, dst)
        try:
            while not self._closed.is_set():
                # In a blackhole nothing is read, so nothing is lost: it flows again on heal.
                if not self._flowing.wait(0.2):
                    continue
                ready, _, _ = select.select([src], [], [], 0.2)
                if not ready or not self._flowing.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    break
                line.put((time.monotonic() + self.latency, data))
        except (OSError, ValueError):  # reset or closed under us
            pass
        finally:
            line.put(None)

    def _deliver(self, line: queue.Queue[tuple[float, bytes] | None], src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                item = line.get()
                if item is None:
                    break
                due, data = item
                if self._closed.wait(max(0.0, due - time.monotonic())):
                    break
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        """Stop forwarding and close every connection."""
        self._closed.set()
        self._flowing.set()
        self._reset_all()
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    except OSError:
        pass
