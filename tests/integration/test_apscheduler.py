"""APScheduler 3.x under leader_only(), in three real processes sharing an election: each
whole-second tick runs once, on the leader, and a tick never runs twice with an accepted
fence, through a graceful stop, a kill -9 and a SIGSTOP of the leader past its TTL."""

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

pytest.importorskip("apscheduler")
redis = pytest.importorskip("redis")

WORKER = Path(__file__).parent / "apps" / "aps_worker.py"
TTL = 2


@pytest.fixture
def workers(etcd: EtcdServer, redis_server: RedisServer, name: str) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    made: list[subprocess.Popen[str]] = []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), etcd.endpoint, name, redis_server.url],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        made.append(proc)
        return proc

    yield start
    end_processes(made, 15)


def ticks(client: Any, name: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(f"{name}:ticks", 0, -1)]


def leader_pid(client: Any, name: str, after: int = 0) -> int | None:
    seen = [t for t in ticks(client, name) if t["slot"] > after]
    return seen[-1]["pid"] if seen else None


def test_ticks_run_once_on_the_leader_through_stop_kill_and_pause(
    workers: Callable[[], subprocess.Popen[str]], redis_server: RedisServer, name: str
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    procs = {p.pid: p for p in (workers() for _ in range(3))}
    assert wait_until(lambda: len(ticks(client, name)) >= 3, 15)

    # steady state: one leader, one run per second
    time.sleep(3)
    steady = ticks(client, name)
    assert len({t["pid"] for t in steady[-3:]}) == 1

    # graceful stop of the leader: the next leader's ticks follow within about a second
    old = leader_pid(client, name)
    assert old is not None
    t_stop = round(time.time())
    procs[old].terminate()
    procs[old].wait(15)
    assert wait_until(lambda: (leader_pid(client, name, t_stop) or old) != old, 10)
    after_stop = [t for t in ticks(client, name) if t["pid"] != old and t["slot"] >= t_stop]
    assert after_stop[0]["slot"] - t_stop <= 2, after_stop[:2]

    # kill -9: within ttl + 3 s
    victim = leader_pid(client, name)
    assert victim is not None and victim != old
    t_kill = round(time.time())
    procs[victim].kill()
    procs[victim].wait(5)
    assert wait_until(lambda: (leader_pid(client, name, t_kill) or victim) != victim, TTL + 5)
    resumed = [t for t in ticks(client, name) if t["pid"] != victim and t["slot"] > t_kill]
    assert resumed[0]["slot"] - t_kill <= TTL + 3, resumed[:2]

    # so far, no job ran anywhere but on the leader (not even to find out it does not lead)
    assert client.llen(f"{name}:not-leader") == 0, client.lrange(f"{name}:not-leader", 0, -1)

    # SIGSTOP past the TTL: a successor ticks; the paused one, resumed, adds no accepted tick
    procs[victim] = workers()  # back to three
    paused = leader_pid(client, name)
    assert paused is not None
    os.kill(paused, signal.SIGSTOP)
    time.sleep(TTL + 3)
    os.kill(paused, signal.SIGCONT)
    time.sleep(2)

    everything = ticks(client, name)
    slots = Counter(t["slot"] for t in everything)
    twice = [slot for slot, n in slots.items() if n > 1]
    assert twice == [], ("a tick ran twice with an accepted fence", [t for t in everything if t["slot"] in twice])
    tokens = [t["token"] for t in everything]
    assert tokens == sorted(tokens)
    assert len({t["pid"] for t in everything}) >= 3
    print(
        f"ticks accepted {len(everything)}, slots twice {len(twice)}, "
        f"refused by a fence {client.llen(f'{name}:refused')}, "
        f"runs off the leader {client.llen(f'{name}:not-leader')}, "
        f"resumed after stop {after_stop[0]['slot'] - t_stop} s, after kill -9 {resumed[0]['slot'] - t_kill} s"
    )
