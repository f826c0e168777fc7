"""A tooz election worker on etcd (the etcd3gw driver), same protocol as worker.py.

tooz's etcd driver has no leader-election API (``watch_elected_as_leader`` raises
NotImplemented), so a tooz user elects with its lock: the leader holds it, the others block
in ``acquire()``, which retries with exponential backoff up to 1 s. The lock's lease is
refreshed every ttl/3 here, as leaderelect renews; a worker that released the lock waits 2 s
before it tries again (the lock is not fair).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from tooz import coordination
from worker import emit, serve_peer  # bench/worker.py: the same JSON lines on the same clock


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--ttl", type=int, default=2)
    args = parser.parse_args()
    coordinator = coordination.get_coordinator(
        f"etcd3+http://{args.endpoint}", f"pid-{os.getpid()}".encode(), lock_timeout=args.ttl, timeout=5
    )
    coordinator.start()
    lock = coordinator.get_lock(args.name.encode())
    step_down = threading.Event()
    quit_ = threading.Event()

    def heartbeat() -> None:
        while not quit_.wait(args.ttl / 3):
            try:
                coordinator.heartbeat()
            except Exception as err:  # report and go on, like a user's heartbeat loop
                emit(ev="heartbeat_error", error=str(err))

    def campaign() -> None:
        while not quit_.is_set():
            if not lock.acquire(blocking=True):
                continue
            emit(ev="elected", token=os.getpid())
            step_down.wait()
            step_down.clear()
            lock.release()
            emit(ev="demoted")
            # The lock is not fair: released and retried at once, it is ours again before the
            # others' backoff ends. Stand aside for a moment, so the handoff goes to another.
            quit_.wait(2.0)

    threading.Thread(target=heartbeat, daemon=True).start()
    threading.Thread(target=campaign, daemon=True).start()
    serve_peer(step_down, quit_)
    emit(ev="quit")
    os._exit(0)  # the campaign thread may be blocked in acquire(); nothing to clean up


if __name__ == "__main__":
    sys.exit(main())
