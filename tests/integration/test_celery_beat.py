"""`celery beat -S leaderelect.celery:LeaderScheduler` in three processes, a real Redis
broker and a real Celery worker: each tick is sent once, by the leader, with its term's
token, through a graceful stop, a kill -9 and a SIGSTOP of the leading beat past its TTL.
Ticks are counted from what the worker received and wrote, not from the beats' logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from leaderelect.testing import EtcdServer, RedisServer, wait_until
from tests.helpers import end_processes

pytest.importorskip("celery")
redis = pytest.importorskip("redis")

APPS = Path(__file__).parent / "apps"
TTL = 2


@pytest.fixture
def celery_procs(
    etcd: EtcdServer, redis_server: RedisServer, name: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    made: list[subprocess.Popen[bytes]] = []
    base = redis_server.url.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "PYTHONPATH": f"{APPS}{os.pathsep}{Path(__file__).parents[2]}",
        "BEAT_NAME": name,
        "BEAT_BROKER": f"{base}/0",
        "BEAT_DATA": f"{base}/1",
        "BEAT_ETCD": etcd.endpoint,
    }
    celery = str(Path(sys.executable).with_name("celery"))

    def start(*args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"celery-{len(made)}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([celery, "-A", "beat_app", *args], env=env, cwd=tmp_path, stdout=log, stderr=log)
        made.append(proc)
        return proc

    yield start
    end_processes(made, 20)


def ticks(client: Any, name: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(f"{name}:ticks", 0, -1)]


def sender_pid(tick: dict[str, Any]) -> int:
    return int(str(tick["sender"]).rsplit(":", 1)[1])


def test_celery_beat_sends_each_tick_once_through_stop_kill_and_pause(
    celery_procs: Callable[..., subprocess.Popen[bytes]], redis_server: RedisServer, name: str, tmp_path: Path
) -> None:
    data = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/1")
    celery_procs("worker", "--pool", "solo", "--loglevel", "WARNING")
    beats = {}
    for i in range(3):
        proc = celery_procs(
            "beat",
            "-S",
            "leaderelect.celery:LeaderScheduler",
            "--schedule",
            str(tmp_path / f"beat-{i}"),
            "--loglevel",
            "INFO",
        )
        beats[proc.pid] = proc
    assert wait_until(lambda: len(ticks(data, name)) >= 3, 40), (tmp_path / "celery-0.log").read_text()[-3000:]
    time.sleep(3)
    steady = ticks(data, name)
    assert len({sender_pid(t) for t in steady[-3:]}) == 1

    def leader() -> int:
        return sender_pid(ticks(data, name)[-1])

    def new_sender_since(t0: float, old: int) -> list[dict[str, Any]]:
        return [t for t in ticks(data, name) if t["sent_at"] > t0 and sender_pid(t) != old]

    # graceful stop: the next beat sends within about a second
    old = leader()
    t_stop = time.time()
    beats[old].terminate()
    beats[old].wait(20)
    assert wait_until(lambda: new_sender_since(t_stop, old), 10)
    assert new_sender_since(t_stop, old)[0]["sent_at"] - t_stop < 2.5

    # kill -9: within ttl + 3 s
    victim = leader()
    t_kill = time.time()
    beats[victim].kill()
    beats[victim].wait(5)
    assert wait_until(lambda: new_sender_since(t_kill, victim), TTL + 6)
    assert new_sender_since(t_kill, victim)[0]["sent_at"] - t_kill <= TTL + 3

    # SIGSTOP past the TTL, then SIGCONT: no tick is accepted twice
    again = celery_procs("beat", "-S", "leaderelect.celery:LeaderScheduler", "--schedule", str(tmp_path / "beat-9"))
    beats[again.pid] = again
    paused = leader()
    os.kill(paused, signal.SIGSTOP)
    time.sleep(TTL + 3)
    os.kill(paused, signal.SIGCONT)
    time.sleep(3)

    everything = ticks(data, name)
    slots = Counter(round(t["sent_at"]) for t in everything)
    assert [slot for slot, n in slots.items() if n > 1] == [], "a tick was accepted twice"
    tokens = [t["token"] for t in everything]
    assert tokens == sorted(tokens)
    assert data.llen(f"{name}:untokened") == 0
    print(
        f"ticks accepted {len(everything)}, twice 0, refused by a fence {data.llen(f'{name}:refused')}, "
        f"first send after stop {new_sender_since(t_stop, old)[0]['sent_at'] - t_stop:.2f} s, "
        f"after kill -9 {new_sender_since(t_kill, victim)[0]['sent_at'] - t_kill:.2f} s"
    )
