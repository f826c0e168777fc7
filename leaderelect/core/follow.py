"""Following an election's queue: read it whole, then watch its prefix from the next revision.

The view is *known* only while a watch that etcd confirmed follows it; the first reconnect
after a watch that worked is immediate (a member failover should not flap the observed
leader), and repeated quick failures back off, jittered and capped: a refused watch (a
stale auth token) was once retried in a busy loop.
"""

from __future__ import annotations

from typing import Callable

from leaderelect.core.base import Context, reconnect_wait, retry_wait
from leaderelect.core.messages import (
    Answer,
    CloseWatch,
    Entry,
    OpenWatch,
    ReadQueue,
    Snapshot,
    WatchCreated,
    WatchEnded,
    WatchEvents,
    WatchMessage,
    WatchProgress,
    WatchState,
)
from leaderelect.core.queue import Candidate, CandidateQueue, Position, View, is_candidate_key

#: a watch that ends sooner than this after etcd confirmed it counts as a quick failure
QUICK = 1.0


def candidate_of(prefix: str, entry: Entry) -> Candidate | None:
    """The candidate *entry* is, or None for any other key under the prefix."""
    if not is_candidate_key(prefix, entry.key, entry.lease_id):
        return None
    return Candidate(entry.key, entry.value, entry.create_revision, entry.lease_id, entry.mod_revision)


class Follower:
    """Keeps the queue of the election with *prefix* as of a revision; calls *on_view* with
    each new view."""

    def __init__(self, ctx: Context, prefix: str, on_view: Callable[[float, View], None]) -> None:
        self._ctx = ctx
        self.prefix = prefix
        self._on_view = on_view
        self.queue = CandidateQueue()
        self.view = View()
        self._synced: tuple[CandidateQueue, int] = (CandidateQueue(), 0)
        self._watch: int | None = None
        self._call: int | None = None
        self._established_at: float | None = None
        self._quick_failures = 0
        self._attempt = 0
        self._stopped = False
        #: watches opened so far (a spin shows here)
        self.watches_opened = 0

    def start(self, now: float) -> None:
        self._sync(now)

    def stop(self, now: float) -> None:
        """Stop following; the view becomes unknown without a publication (no callback after stop)."""
        self._stopped = True
        self._ctx.cancel_timer("follow.sync")
        self._ctx.forget(self._call)
        self._call = None
        if self._watch is not None:
            self._ctx.out.append(CloseWatch(self._watch, self._ctx.origin))
            self._watch = None
        self.view = View(self.view.revision, self.view.leader, False, self.view.observed_at, self.view.size)

    def position(self, key: str, token: int) -> Position:
        view = self.view
        return Position(view.revision, view.known, key in self.queue, self.queue.predecessor(token) is not None, token)

    # -- connect -----------------------------------------------------------------------------

    def _sync(self, now: float) -> None:
        if self._stopped:
            return
        self._call = self._ctx.call(ReadQueue(self.prefix), self._ctx.settings.call_timeout, self._read)

    def _read(self, now: float, answer: Answer) -> None:
        self._call = None
        if not isinstance(answer, Snapshot):
            self._mark_unknown(now)
            self._attempt += 1
            self._ctx.set_timer("follow.sync", now + retry_wait(self._ctx.rng, self._attempt), self._sync)
            return
        self._attempt = 0
        queue = CandidateQueue(c for c in (candidate_of(self.prefix, e) for e in answer.entries) if c is not None)
        # Shown once etcd confirms the watch: a view is known only while something follows it.
        self._synced = (queue, answer.revision)
        self._watch = self._ctx.new_id()
        self._established_at = None
        self.watches_opened += 1
        self._ctx.out.append(OpenWatch(self._watch, self.prefix, answer.revision + 1, self._ctx.origin))

    # -- follow ------------------------------------------------------------------------------

    def watch(self, now: float, watch_id: int, message: WatchMessage) -> None:
        if watch_id != self._watch or self._stopped:
            return  # an earlier watch's late message
        if isinstance(message, WatchEvents):
            revision = self.view.revision
            for change in message.changes:
                candidate = None if change.entry is None else candidate_of(self.prefix, change.entry)
                if candidate is None:
                    self.queue.delete(change.key)  # gone, or (re)written as something else
                else:
                    self.queue.put(candidate)
                revision = max(revision, change.revision)
            self._publish(now, revision, True)
        elif isinstance(message, WatchState):
            self.queue = message.queue  # shared: read, never changed (no WatchEvents follow)
            self._publish(now, max(self.view.revision, message.revision), True)
        elif isinstance(message, WatchProgress):
            self._publish(now, max(self.view.revision, message.revision), True)
        elif isinstance(message, WatchCreated):
            self.queue, revision = self._synced
            self._established_at = now
            self._publish(now, revision, True)
        elif isinstance(message, WatchEnded):
            self._ended(now)

    def _ended(self, now: float) -> None:
        self._watch = None
        established_at = self._established_at
        if established_at is None:
            # Refused at once (a stale auth token, a missing permission): nothing is being
            # followed, so say so, and do not hammer etcd with retries.
            self._mark_unknown(now)
            self._quick_failures += 1
        elif now - established_at < QUICK:
            self._quick_failures += 1
        else:
            self._quick_failures = 0
        if self._quick_failures > (0 if established_at is None else 1):
            wait = reconnect_wait(self._ctx.rng, self._quick_failures)
            self._ctx.set_timer("follow.sync", now + wait, self._sync)
        else:
            self._sync(now)

    def _mark_unknown(self, now: float) -> None:
        if self.view.known:
            self._publish(now, self.view.revision, False, self.view.observed_at)

    def _publish(self, now: float, revision: int, known: bool, observed_at: float | None = None) -> None:
        queue = self.queue
        self.view = View(revision, queue.leader, known, now if observed_at is None else observed_at, len(queue))
        self._on_view(now, self.view)
