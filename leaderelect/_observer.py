"""Follows an election's queue with one watch on its prefix.

The observer keeps the whole queue (key -> candidate) as of a revision, applying the
watch's events in order; the leader is the lowest create revision. Each elector's core
reads the queue from it (``published()``) instead of issuing a Range per change: a
candidate acts only when its immediate predecessor is gone (no herd of requests on a
handoff), and etcd delivers the deletion to every process once, on the watch that
observing needs anyway.

While the watch is down the view is marked unknown: nobody is shown a stale leader as
current (sidecars that serve a stale leader during partitions are a known complaint).
"""

from __future__ import annotations

import logging
import os
import random
import threading
from typing import Callable

from leaderelect import _clock
from leaderelect._etcd import EtcdClient, Subscription, pb, prefix_end
from leaderelect._forksafe import ForkSafeLock
from leaderelect._retry import retrying
from leaderelect._threads import ours
from leaderelect.core.base import reconnect_wait
from leaderelect.core.follow import QUICK
from leaderelect.core.queue import Candidate, CandidateQueue, View
from leaderelect.election import is_candidate, prefix
from leaderelect.exceptions import EtcdError, EtcdUnavailableError

log = logging.getLogger(__name__)


Listener = Callable[[View], None]

#: a change that comes soon after a publication waits this many times as long as that
#: publication took, for more changes to publish with it
HOLD_FACTOR = 2.0
#: the longest that wait, however long a publication takes
COALESCE_FOR = 0.05


class Observer:
    """Runs the watch on its own thread; each listener gets every new view (must not block)."""

    def __init__(
        self,
        client: EtcdClient,
        name: str,
        listener: Listener | None = None,
        *,
        probe_interval: float,
        clock: Callable[[], float] = _clock.clock,
    ) -> None:
        self._client = client
        self._name = name
        self._prefix = prefix(name)
        self._listeners: list[Listener] = [] if listener is None else [listener]
        self._probe_interval = probe_interval
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # Held while views are delivered: listeners see them in order, one at a time.
        self._deliver = threading.Lock()
        self._view = View()
        self._queue = CandidateQueue()
        # the last view published and a copy of the queue it shows, for the electors' cores
        self._published: tuple[View, CandidateQueue] = (self._view, CandidateQueue())
        self._watch: Subscription | None = None
        self._synced: tuple[CandidateQueue, int] = (CandidateQueue(), 0)
        self._established_at: float | None = None
        self._thread = threading.Thread(target=ours(self._run), name=f"leaderelect-observe-{name}", daemon=True)
        self._pool_key: tuple[object, ...] | None = None

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float) -> None:
        self._stop.set()
        with self._lock:
            watch = self._watch
        if watch is not None:
            watch.cancel()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def view(self) -> View:
        with self._lock:
            return self._view

    def published(self) -> tuple[View, CandidateQueue]:
        """The last view published and the queue it shows, as of one revision: a copy
        shared by every reader (read it, never change it)."""
        with self._lock:
            return self._published

    def add_listener(self, listener: Listener) -> None:
        """Add *listener*: it gets the current view at once (if known), then each newer one.

        Delivered under the same lock as every publication, so a listener never gets an
        older view after a newer one (handing the current view back for the caller to
        deliver raced with a publication in between).
        """
        with self._deliver:
            with self._lock:
                self._listeners.append(listener)
                view = self._view
            if view.known:
                self._call(listener, view)

    def remove_listener(self, listener: Listener) -> int:
        """Remove *listener*; returns how many remain."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
            return len(self._listeners)

    def _publish(self, revision: int, known: bool, observed_at: float) -> None:
        with self._deliver:
            with self._lock:
                self._view = View(revision, self._queue.leader, known, observed_at, len(self._queue))
                view = self._view
                # One copy per publication, shared by every elector of the election here
                # (each core follows the queue without a queue of its own to keep).
                self._published = (view, self._queue.copy() if known else self._published[1])
                listeners = list(self._listeners)
            for listener in listeners:
                self._call(listener, view)

    def _call(self, listener: Listener, view: View) -> None:
        try:
            listener(view)
        except Exception:  # one elector's bug must not starve the others sharing this view
            log.exception("[%s] view listener failed", self._name)

    def _mark_unknown(self) -> None:
        view = self.view
        if view.known:
            self._publish(view.revision, False, view.observed_at)

    def _run(self) -> None:
        quick_failures = 0
        while not self._stop.is_set():
            try:
                watch = self._connect()
                if watch is None:
                    return
                self._established_at = None
                try:
                    self._follow(watch)
                except EtcdError as err:
                    if not self._stop.is_set():
                        log.info("[%s] watch ended: %s; resyncing", self._name, err)
                finally:
                    watch.cancel()
                    with self._lock:
                        self._watch = None
                established_at = self._established_at
                if established_at is None:
                    # Refused at once (a stale auth token, a missing permission): nothing is
                    # being followed, so say so, and do not hammer etcd with retries.
                    self._mark_unknown()
                    quick_failures += 1
                elif self._clock() - established_at < QUICK:
                    quick_failures += 1
                else:
                    quick_failures = 0
                # The first reconnect after a watch that worked is immediate: a member
                # failover should not flap the observed leader. Repeated quick failures back
                # off (jittered, capped): a refused watch was retried in a busy loop.
                backoff = quick_failures > (0 if established_at is None else 1)
                if backoff and self._stop.wait(reconnect_wait(random, quick_failures)):
                    return
            except Exception:  # a bug must not leave a silently dead thread: say it, go on
                log.exception("[%s] observer failed; resyncing in 1 s", self._name)
                self._mark_unknown()
                if self._stop.wait(1.0):
                    return

    def _connect(self) -> Subscription | None:
        """Read the whole queue, then watch from the revision after it."""
        try:
            for attempt in retrying(self._stop, f"[{self._name}] observe"):
                with attempt:
                    try:
                        return self._sync()
                    except EtcdError:
                        self._mark_unknown()
                        raise
        except EtcdError:
            return None  # stopped
        return None

    def _sync(self) -> Subscription:
        end = prefix_end(self._prefix)
        response = self._client.range(
            self._prefix, end, sort_target=pb.RangeRequest.CREATE, sort_order=pb.RangeRequest.ASCEND
        )
        revision = response.header.revision
        queue = CandidateQueue(c for c in map(self._candidate, response.kvs) if c is not None)
        watch = self._client.watch(self._prefix, end, revision + 1, probe_interval=self._probe_interval)
        with self._lock:
            self._watch = watch
            # Shown once etcd confirms the watch (see _follow): a view is known only while
            # something follows it.
            self._synced = (queue, revision)
        if self._stop.is_set():
            watch.cancel()
        return watch

    def _candidate(self, kv: pb.KeyValue) -> Candidate | None:
        """The candidate *kv* is, or None for any other key under the prefix."""
        return Candidate.from_kv(kv) if is_candidate(self._prefix, kv) else None

    def _follow(self, watch: Subscription) -> None:
        """Apply the watch's responses to the queue and publish views of it.

        Each view goes to every listener (one per elector of this election in the process),
        so a burst of changes is published in batches. A change is published at once after
        a quiet spell, and at once if it moves the leader while the last publication did
        not (a handoff never waits behind a candidate that just joined). Otherwise it waits,
        for ``HOLD_FACTOR`` times as long as the last publication took (microseconds with
        one listener, a few ms with 200; at most ``COALESCE_FOR``), and every response that
        arrived meanwhile is published with it. Publishing each of 800 deletions to 200
        electors made that process take its turn seconds after the last one: the
        publications held the GIL, so the thread reading the stream fed them one response
        at a time.
        """
        revision = self.view.revision
        published_at = float("-inf")  # the first change is published at once
        hold = 0.0
        moved_leader = False  # whether the last publication showed a new leader
        unpublished = False  # responses applied to the queue that no listener has seen yet
        while not self._stop.is_set():
            wait = max(0.0, published_at + hold - self._clock()) if unpublished else None
            try:
                response = watch.next_response(wait)
            except TimeoutError:
                response = None  # the wait is over: publish what came
            except EtcdError:
                # The stream failed after a burst: show what etcd sent; a resync follows.
                if unpublished:
                    self._publish(revision, True, self._clock())
                raise
            else:
                if response is None:
                    break  # the watch ended
                try:
                    revision = self._apply(response, revision)
                except EtcdError:
                    if unpublished:  # compacted or canceled: what came before it stands
                        self._publish(revision, True, self._clock())
                    raise
                unpublished = True
                since = self._clock() - published_at
                if since < COALESCE_FOR and (
                    watch.backlog() or (since < hold and (moved_leader or not self._moves_leader()))
                ):
                    continue  # more may come (or already wait): publish them together
            if self._stop.is_set():
                return
            moved_leader = self._moves_leader()
            began = self._clock()
            self._publish(revision, True, began)
            published_at, unpublished = self._clock(), False
            hold = min(COALESCE_FOR, HOLD_FACTOR * (published_at - began))
        if unpublished and not self._stop.is_set():
            self._publish(revision, True, self._clock())  # the stream ended after a burst

    def _moves_leader(self) -> bool:
        """Whether the queue's leader differs from the one last published."""
        with self._lock:
            return self._queue.leader != self._view.leader

    def _apply(self, response: pb.WatchResponse, revision: int) -> int:
        """Apply one response to the queue; returns the revision the queue is at."""
        if response.compact_revision:
            raise EtcdUnavailableError(f"watch compacted at {response.compact_revision}")
        if response.canceled:
            raise EtcdUnavailableError(f"watch canceled: {response.cancel_reason or 'no reason given'}")
        if response.created:
            with self._lock:
                self._queue, revision = self._synced
            self._established_at = self._clock()
        elif response.events:
            with self._lock:
                for event in response.events:
                    key = event.kv.key.decode("utf-8", "replace")
                    candidate = None if event.type == pb.Event.DELETE else self._candidate(event.kv)
                    if candidate is None:
                        self._queue.delete(key)  # gone, or (re)written as something else
                    else:
                        self._queue.put(candidate)
                    revision = max(revision, event.kv.mod_revision)
        else:
            # A progress answer: every event up to this revision has been delivered.
            revision = max(revision, response.header.revision)
        return revision


class NoObserver:
    """What an elector that is not running sees: nothing known."""

    view = View()

    def published(self) -> tuple[View, CandidateQueue]:
        return self.view, CandidateQueue()


class _Shared:
    def __init__(self, client: EtcdClient) -> None:
        self.client = client
        self.observers: dict[str, Observer] = {}


_pool_lock = ForkSafeLock()  # a parent thread may hold it at fork()
_pool: dict[tuple[object, ...], _Shared] = {}


def acquire(
    client: EtcdClient, name: str, listener: Listener, *, probe_interval: float, clock: Callable[[], float]
) -> Observer:
    """The process's observer of election *name* on *client*'s etcd, shared by its electors.

    Why shared: with 100 candidates of one election in one process, one watch per elector
    made etcd send every change 100 times and woke 100 threads that contend for the GIL
    (handoff at 500 candidates took 84 ms against 2.6 ms at 1). Electors that reach etcd the
    same way (endpoints, TLS, credentials) share one connection for observing, one watch
    stream, and one observer per election; each still campaigns, renews and confirms its
    leadership on its own session's connection, so what it decides stays its own.
    """
    key = (os.getpid(), client.identity(), probe_interval, clock)
    with _pool_lock:
        shared = _pool.get(key)
        if shared is None:
            shared = _pool[key] = _Shared(client.clone())
        # When the session finds a member failing, observing leaves it too, at once (as when
        # both shared one connection) instead of waiting for its own probe or keepalive.
        client.failover_hooks.append(shared.client.leave_endpoint)
        observer = shared.observers.get(name)
        if observer is None:
            observer = Observer(shared.client, name, probe_interval=probe_interval, clock=clock)
            observer._pool_key = key
            shared.observers[name] = observer
            observer.start()
        # Added under the pool's lock, so a concurrent release cannot close it meanwhile;
        # the listener gets the current view at once.
        observer.add_listener(listener)
    return observer


def release(session_client: EtcdClient, observer: Observer, listener: Listener, timeout: float) -> None:
    """Drop *listener*; the last one out closes the observer (and the connection, if unused)."""
    client: EtcdClient | None = None
    with _pool_lock:
        key = observer._pool_key
        shared = _pool.get(key) if key is not None else None
        if shared is not None and shared.client.leave_endpoint in session_client.failover_hooks:
            session_client.failover_hooks.remove(shared.client.leave_endpoint)
        if observer.remove_listener(listener):
            return
        if key is not None and shared is not None and shared.observers.get(observer._name) is observer:
            del shared.observers[observer._name]
            if not shared.observers:
                del _pool[key]
                client = shared.client
    observer.close(timeout)
    if client is not None:
        client.close()
