"""A kazoo + ZooKeeper election worker with the same protocol as worker.py (a peer to compare)."""

from __future__ import annotations

import argparse
import os
import sys
import threading

from kazoo.client import KazooClient
from worker import emit, serve_peer  # bench/worker.py: the same JSON lines on the same clock


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--ttl", type=float, default=2.0, help="the ZooKeeper session timeout")
    args = parser.parse_args()
    zk = KazooClient(hosts=args.hosts, timeout=args.ttl)
    zk.start(timeout=10)
    step_down = threading.Event()
    quit_ = threading.Event()

    def lead() -> None:
        emit(ev="elected", token=os.getpid())
        step_down.wait()
        step_down.clear()
        emit(ev="demoted")

    def campaign() -> None:
        while not quit_.is_set():
            zk.Election(args.path, f"pid-{os.getpid()}").run(lead)

    threading.Thread(target=campaign, daemon=True).start()
    serve_peer(step_down, quit_)
    zk.stop()
    zk.close()
    emit(ev="quit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
