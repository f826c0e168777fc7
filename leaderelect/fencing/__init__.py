"""Fences for what a leader writes outside etcd: PostgreSQL and Redis.

A leader can be paused between its ``is_leader`` check and its write (GC, swap, SIGSTOP, a VM
pause) and write after its successor began. etcd rejects such a write by itself
(:meth:`LeaderElector.fenced_txn`); another system must check the term's token itself:
remember the highest token it has accepted, refuse lower ones. These fences do that
atomically with the write, in the resource:

- :class:`PostgresFence`: ``with fence.guard(conn, term): ...`` inside your transaction;
  PostgreSQL serialises the guarded transactions of one resource in token order.
- :class:`RedisFence`: ``fence.execute(term, "SET", "k", "v")`` runs one write command in a
  server-side script together with the token check.

Both raise :class:`~leaderelect.StaleTermError` when the resource has seen a newer term.
The client libraries (psycopg 3 or SQLAlchemy 2; redis-py) are extras, imported only when a
fence is used: ``pip install 'leaderelect[postgres]'`` / ``'leaderelect[redis]'``.
"""

from leaderelect.exceptions import FenceBusyError, StaleTermError
from leaderelect.fencing._postgres import PostgresFence
from leaderelect.fencing._redis import RedisFence

__all__ = ["FenceBusyError", "PostgresFence", "RedisFence", "StaleTermError"]
