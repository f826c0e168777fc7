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


#: the schedule is every second; a beat's sends keep their phase within milliseconds, so two
#: accepted ticks closer than this were sent for the same slot (by two beats, or twice)
MIN_GAP = 0.5


def doubles(accepted: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Pairs of consecutive accepted ticks sent closer than MIN_GAP.

    Not "two ticks in the same rounded second": a beat whose phase sits near the half second
    sends at 10.501 and then 11.499 when one send is a few ms late, one tick per slot."""
    sent = sorted(t["sent_at"] for t in accepted)
    return [(a, b) for a, b in zip(sent, sent[1:]) if b - a < MIN_GAP]


def test_doubles_ignores_jitter_at_the_half_second_and_finds_a_second_sender() -> None:
    def at(*times: float) -> list[dict[str, Any]]:
        return [{"sent_at": t} for t in times]

    assert doubles(at(10.501, 11.499, 12.5)) == []
    assert doubles(at(10.2, 10.6, 11.2)) == [(10.2, 10.6)]


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
    t_resume = time.time()
    os.kill(paused, signal.SIGCONT)
    time.sleep(3)

    everything = ticks(data, name)
    timeline = "\n".join(f"{t['sent_at']:.3f} token {t['token']} pid {sender_pid(t)}" for t in everything)
    assert doubles(everything) == [], f"a tick was accepted twice:\n{timeline}"
    late = [t for t in everything if sender_pid(t) == paused and t["sent_at"] > t_resume]
    assert late == [], f"the paused beat's tick after SIGCONT was accepted:\n{timeline}"
    tokens = [t["token"] for t in everything]
    assert tokens == sorted(tokens)
    assert data.llen(f"{name}:untokened") == 0
    print(
        f"ticks accepted {len(everything)}, twice 0, refused by a fence {data.llen(f'{name}:refused')}, "
        f"first send after stop {new_sender_since(t_stop, old)[0]['sent_at'] - t_stop:.2f} s, "
        f"after kill -9 {new_sender_since(t_kill, victim)[0]['sent_at'] - t_kill:.2f} s"
    )
