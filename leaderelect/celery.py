"""Celery beat on every host, tasks sent by the leader only: ``LeaderScheduler``.

.. code-block:: console

    $ celery -A proj beat -S leaderelect.celery:LeaderScheduler

Settings, read from the Celery app's configuration (``app.conf``):

==========================  ==================  ===========================================
setting                     default             meaning
==========================  ==================  ===========================================
``leaderelect_name``        ``"celery-beat"``   the election (one per set of beats)
``leaderelect_endpoints``   ``127.0.0.1:2379``  etcd members
``leaderelect_ttl``         10                  seconds; a crashed leader's beat is replaced
                                                after about this long
``leaderelect_options``     ``{}``              other :class:`~leaderelect.LeaderElector`
                                                keywords (``user``, ``password``, TLS, ...)
==========================  ==================  ===========================================

What it does:

* Every beat campaigns; only the leader sends due tasks. The others check every 0.25 s,
  so after a graceful stop of the leader the next beat sends within a second.
* When a beat becomes leader, the entries already due are marked as run at that moment:
  what came due before the term is skipped, never sent late, so a task the previous leader
  sent is not sent again (a slot can be skipped at a handoff). Entries not due yet keep
  their schedule.
* Every task it sends carries the term's fencing token in its headers; inside the task,
  :func:`task_token` reads it for a fence (:mod:`leaderelect.fencing`). A leader paused
  between its check and its send (GC, SIGSTOP) can still send a task after its term: the
  token is what lets the task's writes be refused.

Needs the ``celery`` extra (``pip install 'leaderelect[celery]'``), Celery 5.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import time
from typing import Any

try:
    from celery import current_task
    from celery.beat import PersistentScheduler
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("leaderelect.celery needs Celery 5: pip install 'leaderelect[celery]'") from err

from leaderelect.elector import LeaderElector
from leaderelect.term import Term

__all__ = ["SENDER_HEADER", "SENT_AT_HEADER", "TOKEN_HEADER", "LeaderScheduler", "task_token"]

log = logging.getLogger(__name__)

#: the message header that carries the sending term's fencing token
TOKEN_HEADER = "leaderelect_token"
#: the header with the sender's wall-clock time at sending (for tracing duplicates)
SENT_AT_HEADER = "leaderelect_sent_at"
#: the header naming the sending beat (``host:pid``)
SENDER_HEADER = "leaderelect_sender"
#: how often a beat that does not lead checks whether it does now
FOLLOWER_POLL = 0.25


class LeaderScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery beat's default scheduler, sending only while this beat leads (see module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.elector: LeaderElector | None = None
        self._term_token: int | None = None
        self._sender = f"{socket.gethostname()}:{os.getpid()}"
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        super().setup_schedule()
        if self.elector is None:
            conf = self.app.conf
            options = dict(conf.get("leaderelect_options") or {})
            self.elector = LeaderElector(
                conf.get("leaderelect_name") or "celery-beat",
                endpoints=conf.get("leaderelect_endpoints"),
                ttl=conf.get("leaderelect_ttl"),
                **options,
            )
            self.elector.start()
            log.info("beat campaigns in election %r", self.elector.name)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        term = self.elector.term if self.elector is not None else None
        if term is None:
            self._term_token = None
            return min(FOLLOWER_POLL, float(self.max_interval))
        if term.token != self._term_token:
            self._begin(term)
        return float(super().tick(*args, **kwargs))

    def _begin(self, term: Term) -> None:
        """A new term: skip whatever is already due (the previous leader sent that); entries
        not due yet keep their phase."""
        now = self.app.now()
        for entry in self.schedule.values():
            try:
                due = entry.is_due().is_due
            except Exception:  # an entry that cannot say: treat it as due, skip this run
                due = True
            if due:
                entry.last_run_at = now
        self._heap = None  # rebuilt from the entries on the next tick
        self._term_token = term.token
        log.info("beat leads (token %d): sending due tasks", term.token)

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        term = self.elector.term if self.elector is not None else None
        if term is None or term.token != self._term_token:
            # not leading, or a new term that tick() has not begun (its due runs are skipped)
            log.info("beat does not lead (in this term): %s not sent", entry.name)
            return None
        if advance:
            entry = self.reserve(entry)
        sent = copy.copy(entry)
        headers = dict(entry.options.get("headers") or {})
        headers[TOKEN_HEADER] = term.token
        headers[SENT_AT_HEADER] = time.time()
        headers[SENDER_HEADER] = self._sender
        sent.options = {**entry.options, "headers": headers}
        return super().apply_async(sent, producer=producer, advance=False, **kwargs)

    def close(self) -> None:
        if self.elector is not None:
            self.elector.stop()
        super().close()


def task_token(task: Any = None) -> int | None:
    """The fencing token of the beat term that sent the running task (None if it was not
    sent by a :class:`LeaderScheduler`). Pass it to a fence with the task's writes."""
    request = (task or current_task).request
    value = getattr(request, TOKEN_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(TOKEN_HEADER)
    return int(value) if value is not None else None
