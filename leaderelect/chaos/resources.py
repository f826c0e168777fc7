"""Resources outside etcd that the chaos contenders write to: a PostgreSQL table and a Redis
list, each through its fence (or, for the negative control, without one).

Each accepted write appends the writer's token to that resource's log, read back in the
order the resource applied it (PostgreSQL: by commit timestamp, ``track_commit_timestamp``;
Redis: RPUSH inside the fence's script). The checker requires the tokens of each log never
to go down (S4).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from leaderelect.fencing import PostgresFence, RedisFence
from leaderelect.term import Term

RESOURCE = "chaos"
LOG_TABLE = "chaos_log"
REDIS_LOG = "chaos:log"


class Writer:
    """A contender's connections to both resources."""

    def __init__(self, dsn: str, redis_url: str, *, guarded: bool, wait: float) -> None:
        import psycopg
        import redis

        self.guarded = guarded
        self._dsn = dsn
        self._pg: Any = psycopg.connect(dsn, connect_timeout=5)
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self._pg_fence = PostgresFence(RESOURCE, wait=wait)
        self._redis_fence = RedisFence(self._redis, RESOURCE)
        self._open: Term | None = None

    def _reconnect(self) -> None:
        import psycopg

        with contextlib.suppress(Exception):
            self._pg.close()
        self._pg = psycopg.connect(self._dsn, connect_timeout=5)

    def write_postgres(self, term: Term | int) -> bool:
        """One write in its own transaction; True if it committed. A bare token skips the
        local check of the term (the stale writes after a pause)."""
        token = term if isinstance(term, int) else term.token
        try:
            with self._pg.transaction():
                if self.guarded:
                    self._pg_fence.guard(self._pg, term)
                self._pg.execute(f"INSERT INTO {LOG_TABLE} (token) VALUES (%s)", (token,))
            return True
        except Exception:
            self._recover()
            raise

    def write_redis(self, term: Term | int) -> Any:
        token = term if isinstance(term, int) else term.token
        if self.guarded:
            return self._redis_fence.execute(term, "RPUSH", REDIS_LOG, token)
        return self._redis.rpush(REDIS_LOG, token)

    def open_transaction(self, term: Term) -> None:
        """Begin a transaction, take the fence and write; leave it open (to be paused)."""
        self._pg.execute("SELECT 1")  # begins the transaction (psycopg is not in autocommit)
        if self.guarded:
            self._pg_fence.guard(self._pg, term)
        self._pg.execute(f"INSERT INTO {LOG_TABLE} (token) VALUES (%s)", (term.token,))
        self._open = term

    def commit_open(self) -> bool:
        """Commit the transaction left open; True if PostgreSQL accepted it."""
        try:
            self._pg.commit()
            return True
        except Exception:
            self._recover()
            return False
        finally:
            self._open = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pg.close()
        with contextlib.suppress(Exception):
            self._redis.close()

    def _recover(self) -> None:
        try:
            self._pg.rollback()
        except Exception:
            self._reconnect()


class Servers:
    """The PostgreSQL and Redis servers of one chaos run (started by the harness)."""

    def __init__(self) -> None:
        from leaderelect.testing import PostgresServer, RedisServer

        # commit timestamps give the log's commit order (an id is taken at insert time)
        self.postgres = PostgresServer(settings={"track_commit_timestamp": "on"})
        self.redis = RedisServer()

    def start(self) -> None:
        import psycopg

        self.postgres.start()
        self.redis.start()
        with psycopg.connect(self.postgres.dsn) as conn:
            PostgresFence(RESOURCE).create_table(conn)
            conn.execute(f"CREATE TABLE {LOG_TABLE} (id bigserial PRIMARY KEY, token bigint NOT NULL)")

    def dump(self, path: Path) -> None:
        """Write each resource's log of accepted tokens, in the order it applied them."""
        import psycopg
        import redis

        with psycopg.connect(self.postgres.dsn) as conn:
            rows = conn.execute(f"SELECT token FROM {LOG_TABLE} ORDER BY pg_xact_commit_timestamp(xmin), id")
            pg = [int(row[0]) for row in rows]
        client = redis.Redis.from_url(self.redis.url)
        rd = [int(v) for v in client.lrange(REDIS_LOG, 0, -1)]
        client.close()
        path.write_text(json.dumps({"postgres": pg, "redis": rd}))

    def close(self) -> None:
        self.postgres.close()
        self.redis.close()
