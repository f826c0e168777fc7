"""Ports for test servers: free, distinct, and out of the way of outgoing connections."""

from __future__ import annotations

import socket

from leaderelect.testing.ports import _ephemeral_low, free_port


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    low = _ephemeral_low()
    if low - 10000 >= 1024:
        assert all(low - 10000 <= p < low for p in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # still free: nothing holds it
