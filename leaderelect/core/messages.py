"""What goes into the core and what comes out of it, as typed values.

Requests are what the core asks etcd (the driver or the simulator sends them, each with a
call id and a deadline); answers come back through ``ElectionCore.answer``. Watch messages
come through ``ElectionCore.watch``. Actions are everything the core wants done.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, Union

from leaderelect.core.queue import Candidate, CandidateQueue, View

# -- requests ------------------------------------------------------------------------------


class Grant(NamedTuple):
    """Grant a lease of *ttl* seconds -> :class:`Granted`."""

    ttl: int


class KeepAlive(NamedTuple):
    """Renew *lease_id* -> :class:`Renewed` (ttl 0: etcd no longer knows it)."""

    lease_id: int


class Revoke(NamedTuple):
    """Revoke *lease_id* (and so delete its keys) -> ``None``."""

    lease_id: int


class Join(NamedTuple):
    """Create *key* on *lease_id* unless it exists (then read it) -> :class:`Joined`."""

    key: str
    lease_id: int
    value: bytes


class Confirm(NamedTuple):
    """Read *key*: does it exist with create revision *token* on *lease_id*? -> ``bool``."""

    key: str
    token: int
    lease_id: int


class Delete(NamedTuple):
    """Delete *key* if its create revision is *token* (any revision if None) -> ``bool``."""

    key: str
    token: int | None


class ReadQueue(NamedTuple):
    """Read every key under *prefix* -> :class:`Snapshot`."""

    prefix: str


Request = Union[Grant, KeepAlive, Revoke, Join, Confirm, Delete, ReadQueue]

# -- answers ---------------------------------------------------------------------------------


class Granted(NamedTuple):
    lease_id: int
    ttl: int


class Renewed(NamedTuple):
    ttl: int


class Joined(NamedTuple):
    #: the key's create revision
    token: int


class Entry(NamedTuple):
    """A key under the election's prefix, as etcd has it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease_id: int


class Snapshot(NamedTuple):
    revision: int
    entries: tuple[Entry, ...]


class Failure(enum.Enum):
    #: the member could not be reached or refused (retry, maybe elsewhere)
    UNAVAILABLE = "unavailable"
    #: the deadline passed: the request may or may not have been applied
    TIMEOUT = "timeout"
    #: etcd does not know the lease (expired or revoked)
    LEASE_NOT_FOUND = "lease not found"


class Failed(NamedTuple):
    failure: Failure
    detail: str = ""


Answer = Union[Granted, Renewed, Joined, Snapshot, bool, None, Failed]

# -- watch messages ----------------------------------------------------------------------------


class WatchCreated(NamedTuple):
    """etcd confirmed the watch: every later change arrives on it, in revision order."""


class Change(NamedTuple):
    """A put (``entry`` set) or a delete (``entry`` None) of *key* at *revision*."""

    key: str
    revision: int
    entry: Entry | None


class WatchEvents(NamedTuple):
    changes: tuple[Change, ...]


class WatchProgress(NamedTuple):
    """Every change up to *revision* has been delivered."""

    revision: int


class WatchEnded(NamedTuple):
    """The watch is gone: canceled, refused, compacted past its start, or its stream broke."""

    reason: str
    compact_revision: int = 0


class WatchState(NamedTuple):
    """The whole queue as of *revision*: what a driver that follows the prefix once for
    every election of a process sends instead of :class:`WatchEvents` (one copy for all of
    them: the core reads it and never changes it). A watch sends one kind or the other."""

    revision: int
    queue: CandidateQueue


WatchMessage = Union[WatchCreated, WatchEvents, WatchProgress, WatchEnded, WatchState]

# -- callbacks the core delivers, in order -------------------------------------------------------


class Reason(str, enum.Enum):
    """A reason: compares equal to its text and prints as it (never matched as a substring)."""

    def __str__(self) -> str:
        return str(self.value)


class DemotionReason(Reason):
    """Why a term ended (the second argument of ``on_demoted``): a ``str`` enum, equal to
    its text (``reason == "resigned"``) and printed as it."""

    #: ``stop()`` was called
    STOPPED = "stopped"
    #: ``resign()`` was called
    RESIGNED = "resigned"
    #: etcd said the lease is gone (revoked, or expired on the server)
    LEASE_LOST = "lease lost"
    #: no renewal succeeded before the local deadline (etcd unreachable, process paused)
    DEADLINE_PASSED = "deadline passed"
    #: the leader key was deleted by someone else
    KEY_DELETED = "key deleted"
    #: the shared :class:`Session` was closed while the elector ran
    SESSION_CLOSED = "session closed"


class TermInfo(NamedTuple):
    """One term: its key, its token (the key's create revision) and its lease."""

    name: str
    key: str
    token: int
    lease_id: int
    value: bytes
    #: the driver's clock when the core learned it leads
    elected_at: float


class Elected(NamedTuple):
    term: TermInfo


class Demoted(NamedTuple):
    term: TermInfo
    reason: DemotionReason


class LeaderChanged(NamedTuple):
    leader: Candidate | None


Callback = Union[Elected, Demoted, LeaderChanged]

# -- actions ---------------------------------------------------------------------------------


class Call(NamedTuple):
    """Send *request*; answer with ``answer(now, call_id, ...)`` by *timeout* seconds from now
    (a :class:`Failed` TIMEOUT at the latest)."""

    call_id: int
    request: Request
    timeout: float
    #: the election that asks ("" for the session: the lease, a withdrawal)
    origin: str = ""


class OpenWatch(NamedTuple):
    """Watch *prefix* from *start_revision*; feed its messages to ``watch(now, watch_id, ...)``."""

    watch_id: int
    prefix: str
    start_revision: int
    origin: str = ""


class CloseWatch(NamedTuple):
    watch_id: int
    origin: str = ""


class Deliver(NamedTuple):
    """Run the user's callbacks for *callback*, after every earlier Deliver; when they return,
    call ``callback_done(now, seq)``."""

    seq: int
    callback: Callback
    #: whose user callbacks these are (the election's name)
    origin: str = ""


class Publish(NamedTuple):
    """A new view of the queue (for ``observation``)."""

    view: View
    origin: str = ""


class ResignDone(NamedTuple):
    """``resign()`` number *request* finished; *stepped_down*: this process was leader."""

    request: int
    stepped_down: bool
    origin: str = ""


class Finished(NamedTuple):
    """Stopped: nothing of this candidate is left running or pending (on a shared session,
    its key may still be being withdrawn: that is the session's)."""

    origin: str = ""


Action = Union[Call, OpenWatch, CloseWatch, Deliver, Publish, ResignDone, Finished]
