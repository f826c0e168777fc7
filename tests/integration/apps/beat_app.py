"""A Celery app for three `celery beat -S leaderelect.celery:LeaderScheduler` processes and a
worker: a task every second records its tick through a Redis fence, with the token from
the message. Used by tests/integration/test_celery_beat.py (configured by environment)."""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery

from leaderelect import StaleTermError
from leaderelect.celery import SENDER_HEADER, SENT_AT_HEADER, task_token
from leaderelect.fencing import RedisFence

NAME = os.environ["BEAT_NAME"]
BROKER = os.environ["BEAT_BROKER"]
DATA = os.environ["BEAT_DATA"]

app = Celery("beat_app", broker=BROKER)
app.conf.update(
    leaderelect_name=NAME,
    leaderelect_endpoints=os.environ["BEAT_ETCD"],
    leaderelect_ttl=2,
    beat_schedule={"tick": {"task": "beat_app.tick", "schedule": 1.0}},
    beat_max_loop_interval=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(bind=True, name="beat_app.tick")  # type: ignore[untyped-decorator]
def tick(self: Any) -> None:
    client = redis.Redis.from_url(DATA)
    token = task_token(self)
    headers = {**(self.request.headers or {}), **vars(self.request)}
    record = json.dumps({"token": token, "sent_at": headers.get(SENT_AT_HEADER), "sender": headers.get(SENDER_HEADER)})
    if token is None:
        client.rpush(f"{NAME}:untokened", record)
        return
    try:
        RedisFence(client, NAME).execute(token, "RPUSH", f"{NAME}:ticks", record)
    except StaleTermError:
        client.rpush(f"{NAME}:refused", record)
