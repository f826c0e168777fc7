"""A simulated etcd with the semantics the core relies on.

Revisions that only grow; leases that expire on the server at their expiry plus the
lessor's lateness (expiry is checked every 0.5 s) and are refreshed to a full TTL when a
raft leader is elected (after a restart, a quorum loss, a leader transfer); transactions
that compare create revisions; prefix watches that deliver every change in revision
order, catch up from a past revision, and refuse a start revision that was compacted.
"""

from __future__ import annotations

from typing import Callable

from leaderelect.core.messages import (
    Answer,
    Change,
    Confirm,
    Delete,
    Entry,
    Failed,
    Failure,
    Grant,
    Granted,
    Join,
    Joined,
    KeepAlive,
    ReadQueue,
    Renewed,
    Request,
    Revoke,
    Snapshot,
)

#: seconds between the lessor's expiry checks (etcd's lessor checks every 500 ms)
EXPIRY_CHECK = 0.5

WatchSink = Callable[[tuple[Change, ...]], None]


class SimWatch:
    __slots__ = ("active", "prefix", "sink")

    def __init__(self, prefix: str, sink: WatchSink) -> None:
        self.prefix = prefix
        self.sink = sink
        self.active = True


class SimEtcd:
    """One etcd cluster's state (its availability is the world's business)."""

    def __init__(self, first_lease: int) -> None:
        self.revision = 1
        self.compacted = 0
        self.kv: dict[str, Entry] = {}
        #: lease id -> [granted ttl, server-side expiry time]
        self.leases: dict[int, list[float]] = {}
        self._history: list[Change] = []
        self._watches: list[SimWatch] = []
        self._next_lease = first_lease

    # -- requests ------------------------------------------------------------------------------

    def handle(self, now: float, request: Request) -> Answer:
        kind = type(request)
        if kind is KeepAlive:
            lease = self.leases.get(request.lease_id)  # type: ignore[union-attr]
            if lease is None:
                return Renewed(0)
            lease[1] = max(lease[1], now + lease[0])
            return Renewed(int(lease[0]))
        if kind is Grant:
            self._next_lease += 1
            self.leases[self._next_lease] = [float(request.ttl), now + request.ttl]  # type: ignore[union-attr]
            return Granted(self._next_lease, request.ttl)  # type: ignore[union-attr]
        if kind is Revoke:
            if request.lease_id not in self.leases:  # type: ignore[union-attr]
                return Failed(Failure.LEASE_NOT_FOUND)
            self._end_lease(request.lease_id)  # type: ignore[union-attr]
            return None
        if kind is Join:
            return self._join(request)  # type: ignore[arg-type]
        if kind is Confirm:
            entry = self.kv.get(request.key)  # type: ignore[union-attr]
            return (
                entry is not None
                and entry.create_revision == request.token  # type: ignore[union-attr]
                and entry.lease_id == request.lease_id  # type: ignore[union-attr]
            )
        if kind is Delete:
            entry = self.kv.get(request.key)  # type: ignore[union-attr]
            if entry is None or (request.token is not None and entry.create_revision != request.token):  # type: ignore[union-attr]
                return False
            self._commit([Change(entry.key, 0, None)])
            return True
        if kind is ReadQueue:
            entries = tuple(sorted((e for k, e in self.kv.items() if k.startswith(request.prefix)), key=_created))  # type: ignore[union-attr]
            return Snapshot(self.revision, entries)
        raise TypeError(f"unknown request {request!r}")

    def _join(self, request: Join) -> Answer:
        # (an existing key keeps its value: election.campaign rewrites a stale value; no
        # property here depends on values)
        if request.lease_id not in self.leases:
            return Failed(Failure.LEASE_NOT_FOUND, "requested lease not found")
        entry = self.kv.get(request.key)
        if entry is not None:
            return Joined(entry.create_revision)
        self._commit([Change(request.key, 0, Entry(request.key, request.value, 0, 0, request.lease_id))])
        return Joined(self.revision)

    def put(self, key: str, value: bytes, lease_id: int = 0) -> None:
        """A write by someone else (an operator, an application key under the prefix)."""
        self._commit([Change(key, 0, Entry(key, value, 0, 0, lease_id))])

    def delete(self, key: str) -> bool:
        if key not in self.kv:
            return False
        self._commit([Change(key, 0, None)])
        return True

    # -- leases --------------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """The lessor's check: revoke every lease past its expiry."""
        for lease_id in [i for i, (_, at) in self.leases.items() if at <= now]:
            self._end_lease(lease_id)

    def refresh_leases(self, now: float) -> None:
        """A raft leader was elected: every lease gets its full TTL from now (never less)."""
        for lease in self.leases.values():
            lease[1] = max(lease[1], now + lease[0])

    def _end_lease(self, lease_id: int) -> None:
        del self.leases[lease_id]
        gone = [Change(k, 0, None) for k, e in self.kv.items() if e.lease_id == lease_id]
        if gone:
            self._commit(gone)

    # -- revisions and watches ---------------------------------------------------------------

    def _commit(self, changes: list[Change]) -> None:
        """Apply *changes* as one revision and tell the watches."""
        self.revision += 1
        rev = self.revision
        done = []
        for change in changes:
            if change.entry is None:
                self.kv.pop(change.key, None)
                done.append(Change(change.key, rev, None))
            else:
                old = self.kv.get(change.key)
                created = old.create_revision if old is not None else rev
                entry = Entry(change.key, change.entry.value, created, rev, change.entry.lease_id)
                self.kv[change.key] = entry
                done.append(Change(change.key, rev, entry))
        self._history.extend(done)
        for watch in list(self._watches):  # a sink may cancel its watch (a broken stream)
            if watch.active:
                matching = tuple(c for c in done if c.key.startswith(watch.prefix))
                if matching:
                    watch.sink(matching)

    def watch(self, prefix: str, start_revision: int, sink: WatchSink) -> SimWatch | None:
        """Open a watch; None if *start_revision* was compacted. Catch-up changes go to
        *sink* at once, one revision at a time."""
        if start_revision < self.compacted:
            return None
        pending: list[Change] = []
        for change in self._history:
            if change.revision >= start_revision and change.key.startswith(prefix):
                if pending and pending[0].revision != change.revision:
                    sink(tuple(pending))
                    pending = []
                pending.append(change)
        if pending:
            sink(tuple(pending))
        watch = SimWatch(prefix, sink)
        self._watches.append(watch)
        return watch

    def cancel(self, watch: SimWatch) -> None:
        watch.active = False
        if watch in self._watches:
            self._watches.remove(watch)

    def cancel_all(self) -> list[SimWatch]:
        """A restart: every watch ends."""
        watches, self._watches = self._watches, []
        for watch in watches:
            watch.active = False
        return watches

    def compact(self) -> None:
        """Compact (physically) at the current revision."""
        self.compacted = self.revision
        self._history = [c for c in self._history if c.revision >= self.compacted]

    def candidates(self, prefix: str) -> list[Entry]:
        return sorted((e for k, e in self.kv.items() if k.startswith(prefix) and e.lease_id), key=_created)


def _created(entry: Entry) -> int:
    return entry.create_revision
