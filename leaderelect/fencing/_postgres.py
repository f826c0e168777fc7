"""PostgresFence: guarded transactions of one resource commit in token order.

What is guaranteed, in PostgreSQL's terms (READ COMMITTED or stricter, one primary):

* ``guard(conn, term)`` runs, in the caller's transaction, an ``INSERT ... ON CONFLICT DO
  UPDATE ... WHERE token <= new`` on the fence row of the resource. The row is locked
  until that transaction commits or rolls back, so the guarded transactions of one resource
  never interleave: each waits for the one holding the fence.
* A transaction whose token is lower than the highest recorded gets
  :class:`~leaderelect.StaleTermError` from ``guard`` and cannot record anything through
  it; so, in commit order, the tokens of the guarded transactions that committed never go
  down.
* A newer leader waits for the fence at most ``wait`` seconds (``SET LOCAL lock_timeout``),
  then gets :class:`~leaderelect.FenceBusyError`.
* An older leader paused inside its transaction cannot hold the fence for long: given a
  :class:`~leaderelect.Term`, ``guard`` sets ``SET LOCAL idle_in_transaction_session_timeout``
  to the time the term has left. If the leader is paused (GC, SIGSTOP, a VM pause) right
  after ``guard`` past its term, PostgreSQL ends its session, the transaction rolls back, and
  the fence is free: that is the case Jepsen found unsafe with etcd locks, and the paused
  leader's writes never commit.

What is not guaranteed:

* Writes made outside a guarded transaction, or before ``guard`` in it (they are not
  ordered by the fence; call ``guard`` first), or in a savepoint that rolls back the guard
  (call it in the outermost transaction).
* The idle timeout restarts with every statement. A leader that keeps running statements
  until near its deadline and then pauses holds the session until about its last statement
  plus the time its term had left at ``guard``: it may then commit after its successor was
  elected (still before the successor's guarded transaction, which waits for it; tokens stay
  in order). A transaction that stays *busy* past its term is not ended at all. Bound your
  statements (``statement_timeout``), or the whole transaction on PostgreSQL 17 and later
  (``transaction_timeout``), if that matters. Conversely, a leader whose transaction sits
  idle for longer than its term had left at ``guard`` loses its connection.
* A bare integer token (e.g. from ``leaderelect.celery.task_token()``) has no time left to
  bound the idle transaction with: only the token order holds.
* Reads, and anything outside PostgreSQL that the transaction triggers.
* Replicas and failover: the fence row lives on the primary; a failover that loses
  committed transactions can lose the highest token too.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from leaderelect.exceptions import ConfigurationError, FenceBusyError, StaleTermError
from leaderelect.fencing._token import TermLike, token_and_time_left

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_LOCK_NOT_AVAILABLE = "55P03"
#: slack added to the idle bound: the term's time left is measured here, before the round trip
_IDLE_MARGIN = 0.05


class PostgresFence:
    """Orders the guarded transactions of *resource* by term; refuses older terms.

    .. code-block:: python

        fence = PostgresFence("billing")
        with psycopg.connect(dsn) as conn:
            fence.create_table(conn)            # once; then commit
            conn.commit()
            with conn.transaction():
                fence.guard(conn, term)         # first, in the transaction
                conn.execute("UPDATE invoices SET sent = true WHERE ...")

    ``guard`` is also a context manager (``with fence.guard(conn, term): ...``). *conn* is a
    psycopg 3 connection, or an SQLAlchemy 2 ``Connection`` or ``Session``.

    :param resource: what the fence protects (one fence row per resource).
    :param table: the fence table (``name`` or ``schema.name``).
    :param wait: seconds a guard waits for the fence held by another transaction (default 10).
    :raises ConfigurationError: for an invalid table name or wait.
    """

    def __init__(self, resource: str, *, table: str = "leaderelect_fence", wait: float = 10.0) -> None:
        if not isinstance(resource, str) or not resource:
            raise ConfigurationError(f"resource must be a non-empty string, not {resource!r}")
        if not _IDENTIFIER.match(table):
            raise ConfigurationError(f"table must be an SQL identifier (schema.name at most), not {table!r}")
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 < wait <= 3600:
            raise ConfigurationError(f"wait must be seconds in (0, 3600], not {wait!r}")
        self.resource = resource
        self.table = table
        self.wait = float(wait)

    def create_table(self, conn: Any) -> None:
        """Create the fence table if missing (in *conn*'s current transaction: commit it)."""
        _execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            " resource text PRIMARY KEY,"
            " token bigint NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT now())",
            {},
        )

    def guard(self, conn: Any, term: TermLike) -> _Guard:
        """Take the fence for *term* in *conn*'s transaction; hold it until that ends.

        :raises StaleTermError: a newer term was recorded, or *term* is over by the local
            clock (nothing is written either way).
        :raises FenceBusyError: another transaction held the fence for longer than ``wait``.
        """
        token, left = token_and_time_left(term, self.resource)
        _require_transaction(conn)
        _execute(conn, f"SET LOCAL lock_timeout = {int(self.wait * 1000)}", {})
        # SET LOCAL outside a transaction warns and does nothing: then the row lock would be
        # released at once and the fence would order nothing (SQLAlchemy's AUTOCOMMIT). A
        # setting of our own, read back, tells.
        _execute(conn, f"SET LOCAL leaderelect.guard = '{int(token)}'", {})
        applied = _execute(conn, "SELECT current_setting('leaderelect.guard', true)", {})
        if applied is None or applied[0] != str(int(token)):
            raise ConfigurationError(
                "PostgresFence.guard() needs a transaction: SET LOCAL did not hold (autocommit?); "
                "run the guard and the writes in one transaction"
            )
        if left is not None:
            idle_ms = max(1, int((left + _IDLE_MARGIN) * 1000))
            _execute(conn, f"SET LOCAL idle_in_transaction_session_timeout = {idle_ms}", {})
        try:
            row = _execute(
                conn,
                f"INSERT INTO {self.table} AS f (resource, token) VALUES (:resource, :token)"
                " ON CONFLICT (resource) DO UPDATE SET token = EXCLUDED.token, updated_at = now()"
                " WHERE f.token <= EXCLUDED.token"
                " RETURNING f.token",
                {"resource": self.resource, "token": token},
            )
        except Exception as err:
            if _sqlstate(err) == _LOCK_NOT_AVAILABLE:
                raise FenceBusyError(
                    f"the fence of {self.resource!r} was held by another transaction for over {self.wait} s"
                ) from err
            raise
        if row is None:
            seen = _execute(
                conn, f"SELECT token FROM {self.table} WHERE resource = :resource", {"resource": self.resource}
            )
            highest = int(seen[0]) if seen is not None else None
            raise StaleTermError(
                f"{self.resource!r} has seen token {highest}; token {token} is from an older term",
                resource=self.resource,
                token=token,
                seen=highest,
            )
        return _Guard()

    def highest(self, conn: Any) -> int | None:
        """The highest token recorded for the resource (None if none yet)."""
        row = _execute(conn, f"SELECT token FROM {self.table} WHERE resource = :resource", {"resource": self.resource})
        return int(row[0]) if row is not None else None


class _Guard(contextlib.AbstractContextManager["_Guard"]):
    """What ``guard`` returns: usable as a context manager for readability; the fence is
    held until the transaction ends, not until the block does."""

    def __exit__(self, *exc: Any) -> None:
        return None


def _is_sqlalchemy(conn: Any) -> bool:
    return type(conn).__module__.split(".")[0] == "sqlalchemy"


def _execute(conn: Any, sql: str, params: dict[str, Any]) -> Any:
    """Run *sql* (``:name`` parameters) on a psycopg 3 connection or an SQLAlchemy 2
    Connection/Session; returns the first row or None."""
    if _is_sqlalchemy(conn):
        from sqlalchemy import text

        result = conn.execute(text(sql), params)
        return result.fetchone() if result.returns_rows else None
    psycopg_sql = re.sub(r":([a-z_]+)", r"%(\1)s", sql)
    cursor = conn.execute(psycopg_sql, params)
    return cursor.fetchone() if cursor.description is not None else None


def _require_transaction(conn: Any) -> None:
    """A guard outside a transaction would release the fence at once: refuse it. (psycopg in
    autocommit mode inside ``with conn.transaction():`` is a transaction; SQLAlchemy is
    checked after the fact: SET LOCAL must hold.)"""
    if _is_sqlalchemy(conn):
        return
    info = getattr(conn, "info", None)
    idle = getattr(getattr(info, "transaction_status", None), "name", "") == "IDLE"
    if getattr(conn, "autocommit", False) and idle:
        raise ConfigurationError(
            "PostgresFence.guard() needs a transaction: the connection is in autocommit mode; "
            "use `with conn.transaction():` (psycopg) around the guard and the writes"
        )


def _sqlstate(err: BaseException) -> str | None:
    """The SQLSTATE of a psycopg 3 (``sqlstate``) or psycopg2 (``pgcode``) error, also when
    SQLAlchemy wrapped it."""
    for candidate in (err, getattr(err, "orig", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if code:
            return str(code)
    return None
