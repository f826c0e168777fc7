"""The mistake the library must refuse: an elector created at import, which gunicorn's
--preload runs in the master, then started in a worker after the fork."""

import os

from leaderelect import LeaderElector

elector = LeaderElector(os.environ["ELECTION"], endpoints=os.environ["ETCD_ENDPOINTS"], ttl=2)


def app(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
