"""True partitions: two network namespaces joined by veth, cut with iptables (root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any


def netns_unavailable() -> str | None:
    """Why true network partitions cannot run here, or None when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class NetnsPair:
    """Two network namespaces of our own joined by a veth pair: a *server* side and a
    *client* side. ``partition()`` drops all traffic between them with iptables in the
    client namespace; ``heal()`` removes the rules. ``close()`` deletes both namespaces.
    Every address used lives inside these namespaces. Needs root, ``ip`` and ``iptables``.
    """

    def __init__(self, subnet: str = "10.213.77") -> None:
        tag = f"le{os.getpid() % 100000}"
        self.server, self.client = f"{tag}s", f"{tag}c"
        self.server_ip, self.client_ip = f"{subnet}.1", f"{subnet}.2"
        self._created: list[str] = []
        try:
            for ns in (self.server, self.client):
                self._ip("netns", "add", ns)
                self._created.append(ns)
            self._ip("link", "add", f"{tag}sv", "type", "veth", "peer", "name", f"{tag}cv")
            for ns, dev, addr in ((self.server, f"{tag}sv", self.server_ip), (self.client, f"{tag}cv", self.client_ip)):
                self._ip("link", "set", dev, "netns", ns)
                self._ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                self._ip("-n", ns, "link", "set", dev, "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    def exec_prefix(self, ns: str) -> list[str]:
        """The command prefix that runs a program inside namespace *ns*."""
        return ["ip", "netns", "exec", ns]

    def _iptables(self, *args: str) -> None:
        subprocess.run([*self.exec_prefix(self.client), "iptables", *args], check=True, capture_output=True, timeout=10)

    def partition(self) -> None:
        """Drop all traffic between the client namespace and the server's address."""
        self._iptables("-A", "OUTPUT", "-d", self.server_ip, "-j", "DROP")
        self._iptables("-A", "INPUT", "-s", self.server_ip, "-j", "DROP")

    def heal(self) -> None:
        """Let that traffic through again."""
        self._iptables("-F", "OUTPUT")
        self._iptables("-F", "INPUT")

    def close(self) -> None:
        """Remove the namespace, its link and its rules."""
        # Deleting a namespace removes its veth end, its rules and its addresses with it.
        for ns in self._created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)
        self._created = []

    def __enter__(self) -> NetnsPair:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
