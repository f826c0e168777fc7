"""The values leaderelect hands to user code: a term, a demotion reason, an observation."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field

from leaderelect.core.messages import DemotionReason
from leaderelect.election import Candidate, Leader
from leaderelect.session import Lease

__all__ = ["Candidate", "DemotionReason", "Leader", "Observation", "Term"]


@dataclass(frozen=True)
class Term:
    """One term of leadership of this process.

    A term never resumes once it ended: the next one has a new key and a higher token.
    """

    #: the election name
    name: str
    #: the leader key, ``<name>/<lease id in hex>``
    key: str
    #: the fencing token: the leader key's create revision, strictly increasing from term to
    #: term (``Candidate.token`` and ``status()["token"]`` are the same number)
    token: int
    #: the etcd lease the key is bound to
    lease_id: int
    #: the value proclaimed when the term began
    value: str
    #: :func:`leaderelect.clock` when this process learned it leads
    elected_at: float
    _lease: Lease = field(repr=False, compare=False)
    # set when the term ends by stop(), resign() or a deletion of its key, which leave the
    # lease alive (it campaigns again): the lease alone would keep the term looking valid
    _ended: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def fencing_token(self) -> int:
        """Deprecated name of :attr:`token` (one name for the token everywhere); removed in 0.3."""
        warnings.warn("Term.fencing_token is now Term.token", DeprecationWarning, stacklevel=2)
        return self.token

    @property
    def valid_until(self) -> float:
        """The :func:`leaderelect.clock` instant the term ends unless renewed; advances with each renewal."""
        return self._lease.valid_until

    def valid_for(self) -> float:
        """Seconds left in this term now by the local deadline; 0 once it is over (stopped,
        resigned, its key deleted, its lease lost or past its deadline; or read in a process
        forked from the leader's)."""
        if self._ended.is_set() or not self._lease.alive():  # alive() checks the pid before any lock
            return 0.0
        return max(0.0, self._lease.remaining())


def mark_ended(term: Term) -> None:
    """Internal (the elector's, when a term ends, before ``on_demoted`` runs): from now on
    ``term.valid_for()`` is 0, though the lease lives on for the next campaign."""
    term._ended.set()


@dataclass(frozen=True)
class Observation:
    """What this process knows of the election's leader."""

    #: the leader, or None when there is none *or* it is not known right now
    leader: Leader | None
    #: False while etcd cannot be followed (then ``leader`` is None, not stale)
    known: bool
    #: seconds since etcd last confirmed what is known
    age: float
