"""A crowd: many candidates of one election in one process, for the large-election fault.

Each candidate is a real ``LeaderElector`` with a lease of its own (one election allows one
candidate per lease); they share the process's observing connection, as a service that
runs many electors does. Their terms are recorded like a contender's (``elected`` /
``demoted`` / ``exit`` lines, each candidate under a pid of its own: the process's pid times
10,000 plus its index), so the checker holds them to the same properties. A long TTL keeps
a thousand renewals from crowding the two cores the contenders run on.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import threading
from typing import Any

from leaderelect import LeaderElector, Term
from leaderelect._clock import clock
from leaderelect.chaos.contender import History


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--ttl", type=int, default=30)
    parser.add_argument("--history", required=True)
    parser.add_argument("--user", default=None)
    parser.add_argument("--password", default=None)
    args = parser.parse_args(argv)

    history = History(args.history)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    base = os.getpid() * 10_000
    electors: list[LeaderElector] = []
    for i in range(args.count):
        elector = LeaderElector(
            args.name,
            f"crowd-{os.getpid()}-{i}",
            endpoints=args.endpoints,
            ttl=args.ttl,
            call_timeout=2.0,
            user=args.user,
            password=args.password,
        )
        pid = base + i

        def elected(term: Term, pid: int = pid) -> None:
            history.log("elected", token=term.token, valid_until=term.valid_until, pid=pid)

        def demoted(term: Term, reason: Any, pid: int = pid) -> None:
            history.log("demoted", token=term.token, reason=str(reason), pid=pid, valid_until=term.valid_until)

        elector.on_elected(elected)
        elector.on_demoted(demoted)
        electors.append(elector)
    for i, elector in enumerate(electors):
        history.log("start", pid=base + i)
        elector.start()
    history.log("crowd_started", count=len(electors))
    stop.wait()
    t_stop = clock()
    stoppers = [threading.Thread(target=e.stop, daemon=True) for e in electors]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join(60)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for i, _elector in enumerate(electors):
        history.log("exit", pid=base + i)
    left = [t.name for t in threading.enumerate() if t.name.startswith("leaderelect-")]
    history.log("crowd_exit", stop_seconds=round(clock() - t_stop, 3), threads_left=left, max_rss_mb=round(rss_mb, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
