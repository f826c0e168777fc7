"""Free loopback ports for test servers."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port for a server, never handed out twice by this process.

    Taken below the kernel's ephemeral range: a port from ``bind(0)`` comes from that range,
    where every outgoing connection takes its source port too, so a server started a moment
    later could find it taken (an etcd that exits at start-up, seen as a rare test error).
    """
    low = _ephemeral_low()
    with _ports_lock:
        if low - 10000 >= 1024:
            for _ in range(200):
                port = random.randrange(low - 10000, low)
                if port in _handed_out:
                    continue
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    try:
                        sock.bind(("127.0.0.1", port))
                    except OSError:
                        continue
                _handed_out.add(port)
                return port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        _handed_out.add(port)
        return port
