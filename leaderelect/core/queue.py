"""An election's queue as plain values: candidates, their order, and what is known of it.

No I/O here: the observer (threads) and the core (simulation) both keep their queue in these.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from leaderelect._etcd import pb


@dataclass(frozen=True)
class Candidate:
    """One key in an election's queue."""

    key: str
    raw_value: bytes = field(repr=False)
    #: the key's create revision: its place in the queue, and the fencing token if it leads
    token: int
    lease_id: int
    #: the revision of the key's last change (a proclaim changes it)
    mod_revision: int

    @property
    def value(self) -> str:
        """The value as text (undecodable bytes replaced)."""
        return self.raw_value.decode("utf-8", "replace")

    @classmethod
    def from_kv(cls, kv: pb.KeyValue) -> Candidate:
        return cls(
            key=kv.key.decode("utf-8", "replace"),
            raw_value=kv.value,
            token=kv.create_revision,
            lease_id=kv.lease,
            mod_revision=kv.mod_revision,
        )


def key_of(prefix: str, lease_id: int) -> str:
    """The candidate key of *lease_id* in the election with *prefix* (``<name>/``)."""
    return prefix + format(lease_id, "x")


def is_candidate_key(prefix: str, key: str, lease_id: int) -> bool:
    """Whether *key* on *lease_id* is a candidate of the election with *prefix*: exactly
    ``<name>/<its own lease id in lowercase hex>``, on a lease (see ``election.is_candidate``)."""
    return lease_id != 0 and key == key_of(prefix, lease_id)


class CandidateQueue:
    """An election's candidates ordered by create revision.

    Lookups are O(log n) and an event costs O(log n) plus a memmove, with no copy of the
    queue: with 500 candidates every observer applies 500 events at start-up, and copying
    the queue per event made that cubic overall.
    """

    def __init__(self, candidates: Iterable[Candidate] = ()) -> None:
        self._by_key: dict[str, Candidate] = {}
        self._tokens: list[int] = []
        self._by_token: dict[int, Candidate] = {}
        for candidate in candidates:
            self.put(candidate)

    def copy(self) -> CandidateQueue:
        """An independent copy (O(n); for a copy that many readers share)."""
        other = CandidateQueue()
        other._by_key = dict(self._by_key)
        other._tokens = list(self._tokens)
        other._by_token = dict(self._by_token)
        return other

    def put(self, candidate: Candidate) -> None:
        old = self._by_key.get(candidate.key)
        if old is not None and old.token != candidate.token:
            self.delete(old.key)
            old = None
        self._by_key[candidate.key] = candidate
        self._by_token[candidate.token] = candidate
        if old is None:
            bisect.insort(self._tokens, candidate.token)

    def delete(self, key: str) -> None:
        old = self._by_key.pop(key, None)
        if old is not None:
            del self._by_token[old.token]
            del self._tokens[bisect.bisect_left(self._tokens, old.token)]

    @property
    def leader(self) -> Candidate | None:
        return self._by_token[self._tokens[0]] if self._tokens else None

    def predecessor(self, token: int) -> Candidate | None:
        """The candidate right ahead of *token*, if any."""
        i = bisect.bisect_left(self._tokens, token)
        return self._by_token[self._tokens[i - 1]] if i > 0 else None

    def ordered(self) -> list[Candidate]:
        return [self._by_token[t] for t in self._tokens]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._tokens)


@dataclass(frozen=True)
class View:
    """What is known of the leader as of ``revision``; ``known`` is False while the watch is down."""

    revision: int = 0
    leader: Candidate | None = None
    known: bool = False
    #: :func:`leaderelect.clock` of the last answer from etcd that confirmed this view
    observed_at: float = 0.0
    size: int = 0


@dataclass(frozen=True)
class Position:
    """Where the candidate key created at revision ``token`` stands in the queue as of
    ``revision``. The rules read off it are the same for the threaded campaign and the core."""

    revision: int
    known: bool
    present: bool
    #: a candidate is ahead of it in the queue
    behind: bool
    #: the key's create revision
    token: int

    @property
    def settled(self) -> bool:
        """The view includes the key's creation: only then does it say anything about the key."""
        return self.known and self.revision >= self.token

    @property
    def gone(self) -> bool:
        """The key was created and is no longer there (deleted, or its lease ended)."""
        return self.settled and not self.present

    @property
    def first(self) -> bool:
        """The key is there and nobody is ahead of it."""
        return self.settled and self.present and not self.behind
