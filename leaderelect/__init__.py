"""leaderelect: one leader among many processes, on etcd v3, with callbacks.

.. code-block:: python

    from leaderelect import LeaderElector

    with LeaderElector("scheduler", endpoints="127.0.0.1:2379", ttl=10) as elector:
        if elector.wait_elected(timeout=30):
            ...
"""

import logging

from leaderelect._clock import clock
from leaderelect.elector import LeaderElector
from leaderelect.exceptions import (
    ConfigurationError,
    ElectorStateError,
    EtcdError,
    EtcdUnavailableError,
    FenceBusyError,
    LeaderElectError,
    LeaseExpiredError,
    NotLeaderError,
    StaleTermError,
)
from leaderelect.session import Lease, Session
from leaderelect.settings import Settings
from leaderelect.term import Candidate, DemotionReason, Leader, Observation, Term

__version__ = "0.1.0"

__all__ = [
    "Candidate",
    "ConfigurationError",
    "DemotionReason",
    "ElectorStateError",
    "EtcdError",
    "EtcdUnavailableError",
    "FenceBusyError",
    "Leader",
    "LeaderElectError",
    "LeaderElector",
    "Lease",
    "LeaseExpiredError",
    "NotLeaderError",
    "Observation",
    "Session",
    "Settings",
    "StaleTermError",
    "Term",
    "__version__",
    "clock",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
