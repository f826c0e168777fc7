"""gunicorn settings: start the elector in each worker after the fork; resign on exit."""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = 2


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    import app  # with --preload this is the module the master loaded; without, it loads here

    app.start_elector()


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    import app

    if app.elector is not None:
        app.elector.stop()  # resigns at once, so the other worker leads within milliseconds


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # drop a dead worker's is_leader from the sum
