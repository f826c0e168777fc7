"""Flask under uWSGI: every worker runs its own elector, created after the fork.

    ETCD_ENDPOINTS=127.0.0.1:2379 uwsgi --ini uwsgi.ini                 # @postfork
    ETCD_ENDPOINTS=127.0.0.1:2379 uwsgi --ini uwsgi.ini --lazy-apps     # the app loads per worker

By default uWSGI loads the app once and then forks: an elector started at import would live in
the master and gRPC would crash the workers. ``@postfork`` starts it in each worker instead;
with ``--lazy-apps`` the app itself is imported in each worker, after the fork.
"""

from __future__ import annotations

import os
from typing import Any

import uwsgi  # type: ignore[import-not-found]  # provided by the uWSGI server
from flask import Flask
from uwsgidecorators import postfork  # type: ignore[import-not-found]

from leaderelect import LeaderElector
from leaderelect.health import flask_blueprint

app = Flask(__name__)
elector: LeaderElector | None = None


def start_elector() -> None:
    global elector
    if elector is not None and elector.pid == os.getpid():
        return
    elector = LeaderElector(
        os.environ.get("ELECTION", "uwsgi-jobs"),
        endpoints=os.environ.get("ETCD_ENDPOINTS", "127.0.0.1:2379"),
        ttl=int(os.environ.get("ELECTION_TTL", "5")),
    )
    elector.start()
    uwsgi.atexit = elector.stop  # resign when the worker exits gracefully


if uwsgi.opt.get("lazy-apps") in (b"true", b"1", True):
    start_elector()  # imported in the worker, after the fork
else:
    postfork(start_elector)  # imported in the master: start after each fork

app.register_blueprint(flask_blueprint(lambda: elector))


@app.get("/")
def index() -> Any:
    return {"pid": os.getpid(), "is_leader": bool(elector and elector.is_leader)}
