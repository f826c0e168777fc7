"""Fences against a real PostgreSQL and a real Redis: older terms are refused, guarded
transactions are serialised, and a paused leader's open transaction never commits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leaderelect import ConfigurationError, FenceBusyError, StaleTermError
from leaderelect.fencing import PostgresFence, RedisFence
from leaderelect.testing import EtcdServer, PostgresServer, RedisServer, wait_until
from tests.conftest import ElectorFactory

psycopg = pytest.importorskip("psycopg")
redis = pytest.importorskip("redis")


@pytest.fixture
def fence(postgres_server: PostgresServer, name: str) -> Iterator[PostgresFence]:
    fence = PostgresFence(name, wait=5.0)
    with psycopg.connect(postgres_server.dsn) as conn:
        fence.create_table(conn)
        conn.execute("CREATE TABLE IF NOT EXISTS fenced_log (resource text, token bigint, note text)")
    yield fence


def guarded_write(dsn: str, fence: PostgresFence, term: Any, note: str) -> None:
    token = term if isinstance(term, int) else term.token
    with psycopg.connect(dsn) as conn, conn.transaction():
        fence.guard(conn, term)
        conn.execute("INSERT INTO fenced_log VALUES (%s, %s, %s)", (fence.resource, token, note))


def log_of(dsn: str, resource: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT token, note FROM fenced_log WHERE resource = %s ORDER BY ctid", (resource,))
        return [(int(token), str(note)) for token, note in rows]


def test_postgres_fence_refuses_older_terms(postgres_server: PostgresServer, fence: PostgresFence) -> None:
    dsn = postgres_server.dsn
    guarded_write(dsn, fence, 5, "term 5")
    guarded_write(dsn, fence, 5, "term 5 again")  # a term writes as often as it likes
    with pytest.raises(StaleTermError) as refused:
        guarded_write(dsn, fence, 3, "term 3, late")
    assert (refused.value.token, refused.value.seen, refused.value.resource) == (3, 5, fence.resource)
    guarded_write(dsn, fence, 7, "term 7")
    assert log_of(dsn, fence.resource) == [(5, "term 5"), (5, "term 5 again"), (7, "term 7")]
    with psycopg.connect(dsn) as conn:
        assert fence.highest(conn) == 7


def test_postgres_guarded_transactions_are_serialised_and_the_wait_is_bounded(
    postgres_server: PostgresServer, fence: PostgresFence
) -> None:
    dsn = postgres_server.dsn
    short = PostgresFence(fence.resource, wait=0.5)
    with psycopg.connect(dsn) as older:
        with older.transaction():
            fence.guard(older, 5)  # holds the fence until this transaction ends
            t0 = time.monotonic()
            with pytest.raises(FenceBusyError):
                guarded_write(dsn, short, 7, "term 7, waited too long")
            assert 0.4 < time.monotonic() - t0 < 3
            older.execute("INSERT INTO fenced_log VALUES (%s, 5, 'term 5')", (fence.resource,))
        guarded_write(dsn, fence, 7, "term 7")
    assert log_of(dsn, fence.resource) == [(5, "term 5"), (7, "term 7")]


def test_postgres_guard_needs_a_transaction(postgres_server: PostgresServer, fence: PostgresFence) -> None:
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        with pytest.raises(ConfigurationError):
            fence.guard(conn, 5)
        with conn.transaction():  # autocommit mode with an explicit transaction is fine
            fence.guard(conn, 5)
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn, pytest.raises(ConfigurationError, match="SET LOCAL did not hold"):
            fence.guard(conn, 6)  # each statement would commit alone: the fence would order nothing
    finally:
        engine.dispose()


def test_postgres_guard_with_sqlalchemy_connection_and_session(
    postgres_server: PostgresServer, fence: PostgresFence
) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.orm import Session

    engine = sqlalchemy.create_engine(postgres_server.url)
    try:
        with engine.begin() as conn, fence.guard(conn, 11):
            conn.execute(sqlalchemy.text("INSERT INTO fenced_log VALUES (:r, 11, 'core')"), {"r": fence.resource})
        with Session(engine) as session, session.begin():
            fence.guard(session, 12)
            session.execute(sqlalchemy.text("INSERT INTO fenced_log VALUES (:r, 12, 'orm')"), {"r": fence.resource})
        with Session(engine) as session, session.begin(), pytest.raises(StaleTermError):
            fence.guard(session, 11)
    finally:
        engine.dispose()
    assert log_of(postgres_server.dsn, fence.resource) == [(11, "core"), (12, "orm")]


def test_a_term_over_by_the_local_clock_is_refused_before_the_resource_is_asked(
    make_elector: ElectorFactory, postgres_server: PostgresServer, fence: PostgresFence, redis_server: RedisServer
) -> None:
    elector = make_elector("x").start()
    assert elector.wait_elected(10)
    resigned = elector.term
    assert resigned is not None and resigned.valid_for() > 0
    assert elector.resign()  # the lease lives on (it campaigns again); the term does not
    assert resigned.valid_for() == 0
    with pytest.raises(StaleTermError, match="over by the local clock"):
        guarded_write(postgres_server.dsn, fence, resigned, "after resigning")
    assert elector.wait_elected(10)
    term = elector.term
    assert term is not None and term.valid_for() > 0
    elector.stop()
    assert term.valid_for() == 0
    with pytest.raises(StaleTermError, match="over by the local clock"):
        guarded_write(postgres_server.dsn, fence, term, "after the term")
    with pytest.raises(StaleTermError, match="over by the local clock"):
        RedisFence(redis.Redis.from_url(redis_server.url), fence.resource).execute(term, "SET", "k", "v")
    assert log_of(postgres_server.dsn, fence.resource) == []


_PAUSED_LEADER = textwrap.dedent(
    """
    import sys, time, psycopg
    from leaderelect import LeaderElector
    from leaderelect.fencing import PostgresFence

    endpoint, name, dsn = sys.argv[1:4]
    elector = LeaderElector(name, "old", endpoints=endpoint, ttl=2)
    elector.start()
    assert elector.wait_elected(10)
    term = elector.term
    fence = PostgresFence(name, wait=10)
    conn = psycopg.connect(dsn)
    conn.execute("SELECT 1")  # the transaction begins
    fence.guard(conn, term)
    conn.execute("INSERT INTO fenced_log VALUES (%s, %s, 'old leader, paused')", (name, term.token))
    print("guarded", term.token, flush=True)
    sys.stdin.readline()  # SIGSTOP comes here; SIGCONT, then a line, after the successor wrote
    try:
        conn.commit()
        print("committed", flush=True)
    except Exception as err:
        print("commit failed:", type(err).__name__, flush=True)
    """
)


def test_a_leader_paused_inside_a_guarded_transaction_never_commits(
    etcd: EtcdServer,
    postgres_server: PostgresServer,
    fence: PostgresFence,
    name: str,
    tmp_path: Path,
    make_elector: ElectorFactory,
) -> None:
    """Jepsen's etcd 3.4.3 case: a lock holder paused past its lease still writes after its
    successor. Here PostgreSQL ends the paused leader's idle transaction once its term's time
    is up, the successor's guarded write goes through, and the old write never commits."""
    script = tmp_path / "paused_leader.py"
    script.write_text(_PAUSED_LEADER)
    old = subprocess.Popen(
        [sys.executable, str(script), etcd.endpoint, name, postgres_server.dsn],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert old.stdout is not None and old.stdin is not None
        line = old.stdout.readline()
        assert line.startswith("guarded"), line
        old_token = int(line.split()[1])
        os.kill(old.pid, signal.SIGSTOP)  # paused inside the guarded transaction
        successor = make_elector("successor", name=name).start()
        assert successor.wait_elected(15)  # the old lease expired on the server
        term = successor.term
        assert term is not None and term.token > old_token
        t0 = time.monotonic()
        guarded_write(postgres_server.dsn, fence, term, "successor")  # waits for the old session's end
        assert time.monotonic() - t0 < 5
        os.kill(old.pid, signal.SIGCONT)
        old.stdin.write("\n")
        old.stdin.flush()
        outcome = old.stdout.readline().strip()
        assert outcome.startswith("commit failed"), outcome
        assert log_of(postgres_server.dsn, fence.resource) == [(term.token, "successor")]
    finally:
        os.kill(old.pid, signal.SIGCONT)
        old.kill()
        old.wait(10)


def test_redis_fence_runs_commands_only_for_the_newest_term(redis_server: RedisServer, name: str) -> None:
    client = redis.Redis.from_url(redis_server.url)
    fence = RedisFence(client, name)
    assert fence.highest() is None
    assert fence.execute(5, "SET", f"{name}:k", "five") in (b"OK", "OK", True)
    assert fence.execute(5, "HSET", f"{name}:h", "f", "v") == 1
    assert fence.execute(6, "XADD", f"{name}:log", "*", "token", "6")
    with pytest.raises(StaleTermError) as refused:
        fence.execute(5, "SET", f"{name}:k", "five, late")
    assert (refused.value.token, refused.value.seen) == (5, 6)
    assert client.get(f"{name}:k") == b"five"
    assert fence.highest() == 6


def test_redis_fence_is_atomic_under_concurrent_terms(redis_server: RedisServer, name: str) -> None:
    """Writers of many terms at once: the accepted writes, in the order Redis applied them,
    never go back to an older token."""
    client = redis.Redis.from_url(redis_server.url)
    fence = RedisFence(client, name)
    errors: list[BaseException] = []

    def writer(token: int) -> None:
        for _ in range(50):
            try:
                fence.execute(token, "RPUSH", f"{name}:log", str(token))
            except StaleTermError:
                return
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)
                return

    threads = [threading.Thread(target=writer, args=(token,)) for token in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    accepted = [int(v) for v in client.lrange(f"{name}:log", 0, -1)]
    assert accepted and accepted == sorted(accepted)
    assert wait_until(lambda: fence.highest() == max(accepted), 1)
