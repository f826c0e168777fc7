"""Flask under gunicorn: every worker runs its own elector, created after the fork.

    ETCD_ENDPOINTS=127.0.0.1:2379 gunicorn -c gunicorn.conf.py app:app            # or add --preload

gRPC is not fork-safe, so nothing here touches etcd at import: gunicorn.conf.py's ``post_fork``
hook calls :func:`start_elector` in each worker (with or without ``--preload``).
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

from flask import Flask

from leaderelect import DemotionReason, LeaderElector, Term
from leaderelect.health import flask_blueprint

log = logging.getLogger("example")
app = Flask(__name__)
elector: LeaderElector | None = None


def start_elector() -> LeaderElector:
    """Create and start this worker's elector (once per process)."""
    global elector
    if elector is not None and elector.pid == os.getpid():
        return elector
    elector = LeaderElector(
        os.environ.get("ELECTION", "flask-jobs"),
        endpoints=os.environ.get("ETCD_ENDPOINTS", "127.0.0.1:2379"),
        ttl=int(os.environ.get("ELECTION_TTL", "5")),
    )

    @elector.on_elected
    def start_jobs(term: Term) -> None:
        log.warning("worker %d leads (token %d): starting the jobs", os.getpid(), term.token)

    @elector.on_demoted
    def stop_jobs(term: Term, reason: DemotionReason) -> None:
        log.warning("worker %d stopped leading (%s): stopping the jobs", os.getpid(), reason)

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from leaderelect.metrics import instrument

        instrument(elector)
    elector.start()
    return elector


# GET /leaderelect: this worker's elector.status(), 200 while it follows the election
app.register_blueprint(flask_blueprint(lambda: elector))


@app.get("/")
def index() -> Any:
    return {"pid": os.getpid(), "is_leader": bool(elector and elector.is_leader)}


@app.get("/metrics")
def metrics() -> Any:
    # prometheus_client's multiprocess mode: every worker's values, summed as each metric says
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(_WorkerFiles(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}


class _WorkerFiles:
    """MultiProcessCollector, minus the worker files that are still empty.

    prometheus_client creates a worker's file and sizes it a moment later; a scrape in that
    moment, or after a worker killed in it, fails as a whole on the empty file
    (prometheus/client_python#1199). An empty file holds no values, so it is skipped. A file
    is never empty again once sized, so the size check cannot race with the read.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [f for f in glob.glob(os.path.join(self.path, "*.db")) if _size(f) > 0]
        return MultiProcessCollector.merge(files, accumulate=True)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:  # a dead worker's live gauge, removed since the glob
        return 0
