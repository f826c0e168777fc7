"""A process running APScheduler under leader_only(): a job every whole second records
its slot through a Redis fence. Used by tests/integration/test_apscheduler.py."""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

import redis
from apscheduler.events import EVENT_JOB_SUBMITTED
from apscheduler.schedulers.background import BackgroundScheduler

from leaderelect import LeaderElector, NotLeaderError, StaleTermError
from leaderelect.apscheduler import current_term, leader_only
from leaderelect.fencing import RedisFence


def main() -> None:
    endpoint, name, redis_url = sys.argv[1:4]
    client = redis.Redis.from_url(redis_url)
    fence = RedisFence(client, name)

    # The run's scheduled time, from the submission event (sent just after the round that
    # submitted the run): a run that starts late under load still names its own slot.
    scheduled: queue.Queue[float] = queue.Queue()

    def submitted(event: Any) -> None:
        for run_time in event.scheduled_run_times:
            scheduled.put(run_time.timestamp())

    def tick() -> None:
        try:
            slot = round(scheduled.get(timeout=2))
        except queue.Empty:
            slot = -round(time.time())  # unknown: never equal to a real slot
        record = {"slot": slot, "pid": os.getpid()}
        try:
            term = current_term()
        except NotLeaderError:
            client.rpush(f"{name}:not-leader", json.dumps(record))
            return
        record["token"] = term.token
        try:
            fence.execute(term, "RPUSH", f"{name}:ticks", json.dumps(record))
        except StaleTermError:
            client.rpush(f"{name}:refused", json.dumps(record))

    scheduler = BackgroundScheduler()
    scheduler.add_listener(submitted, EVENT_JOB_SUBMITTED)
    scheduler.add_job(tick, "cron", second="*", misfire_grace_time=1, max_instances=1)
    elector = LeaderElector(name, f"pid-{os.getpid()}", endpoints=endpoint, ttl=2)
    leader_only(scheduler, elector)
    scheduler.start()
    elector.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    elector.stop()  # pauses the scheduler and waits for a run in progress, then hands over
    scheduler.shutdown()


if __name__ == "__main__":
    main()
