"""``make bench``: leaderelect beside etcd's floor and `etcdctl elect`, on the same etcd, in one
run, and beside its peers (kazoo + ZooKeeper, tooz on etcd) timed the same way.

Benchmarks assert nothing; they report (bench/RESULTS.md and bench/results.json).
``QUICK=1`` runs fewer trials, ``ONLY=floor,idle`` some steps. Every time is on
``leaderelect.clock()``, the host-wide clock of the deadlines. Graceful handoffs are timed the
same way for every implementation, in this process: from the moment it asks the leader to step
down (writes the command to its stdin, or sends SIGINT) to the arrival of the successor's
"elected" line on its stdout pipe (stamped by a thread blocked reading that pipe, no polling).
Other times are read by the process where the event happened.

The layout: ``harness.py`` (processes, waits, the bare watch, etcd's metrics, summaries),
``scenarios.py`` (what is measured), ``peers.py`` (kazoo, tooz), ``worker.py`` and the
``peer_*.py`` workers (one protocol), ``report.py`` (RESULTS.md).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # harness, scenarios, peers, report: siblings

from harness import HERE, machine, timed
from peers import kazoo_peer, tooz_peer
from report import render
from scenarios import (
    burst,
    demotion,
    failover,
    floor,
    handoff_etcdctl,
    handoff_leaderelect,
    idle,
    scale,
    startup,
)

from leaderelect._config import parse_endpoints
from leaderelect._etcd import EtcdClient
from leaderelect.testing import EtcdServer


def main() -> int:
    results: dict[str, Any] = {"machine": machine()}
    with EtcdServer() as etcd:
        client = EtcdClient(parse_endpoints(etcd.endpoint)[0], call_timeout=5)
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("floor", lambda: floor(client)),
            ("handoff_leaderelect", lambda: handoff_leaderelect(etcd, client)),
            ("handoff_etcdctl", lambda: handoff_etcdctl(etcd)),
            ("failover_ttl2", lambda: failover(etcd, client, 2)),
            ("failover_ttl5", lambda: failover(etcd, client, 5)),
            ("demotion", lambda: demotion(etcd, client)),
            ("idle", lambda: idle(etcd)),
            ("scale", lambda: scale(etcd, client)),
            ("burst", lambda: burst(etcd, client)),
            ("startup", lambda: startup(etcd)),
            ("kazoo", kazoo_peer),
            ("tooz", lambda: tooz_peer(etcd)),
        ]
        only = os.environ.get("ONLY")
        for key, step in steps:
            if only and key not in only.split(","):
                continue
            with timed(results, key):
                results[key] = step()
        client.close()
    out = Path(os.environ.get("BENCH_OUT", HERE))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "RESULTS.md").write_text(render(results))
    print((out / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    tempfile.tempdir = None
    sys.exit(main())
