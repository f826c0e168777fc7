"""The election's decisions, with no I/O: no threads, no sockets, no sleeps, no clock reads.

Events go in (``start``, ``answer``, ``watch``, ``tick``, ``stop``, ``resign``,
``callback_done``, each with the time ``now``) and actions come out
(:mod:`leaderelect.core.messages`). ``leaderelect.sim`` runs many cores against a
simulated etcd; a test imports this package with sockets, threads and clocks blocked.
"""

from leaderelect.core.base import Config, Mutations
from leaderelect.core.elector import ElectionCore, Phase
from leaderelect.core.lease import LeaseEnd, LeaseState
from leaderelect.core.queue import Candidate, CandidateQueue, Position, View

__all__ = [
    "Candidate",
    "CandidateQueue",
    "Config",
    "ElectionCore",
    "LeaseEnd",
    "LeaseState",
    "Mutations",
    "Phase",
    "Position",
    "View",
]
