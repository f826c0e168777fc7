"""The public error hierarchy of leaderelect."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ElectorStateError",
    "EtcdError",
    "EtcdUnavailableError",
    "FenceBusyError",
    "LeaderElectError",
    "LeaseExpiredError",
    "NotLeaderError",
    "StaleTermError",
]


class LeaderElectError(Exception):
    """Base class of every error leaderelect raises."""


class ConfigurationError(LeaderElectError, ValueError):
    """A setting is invalid; raised at construction, never later from a thread."""


class ElectorStateError(LeaderElectError, RuntimeError):
    """The elector is used in a state that does not allow it.

    ``start()`` twice, use after ``stop()``, or use in a child process of the one that
    created it (gRPC channels are not fork-safe).
    """


class NotLeaderError(LeaderElectError):
    """A leader-only operation was called while this process does not lead (a write that
    finds its term over returns False instead)."""


class StaleTermError(LeaderElectError):
    """A fenced write was refused: the resource has seen a newer term's token (or this
    term is over by the local clock). The term is over: stop this work, do not retry it.

    ``resource`` names the resource, ``token`` is the refused token and ``seen`` the highest
    the resource had recorded (None when the local deadline refused it).
    """

    def __init__(self, message: str, *, resource: str, token: int, seen: int | None) -> None:
        super().__init__(message)
        self.resource = resource
        self.token = token
        self.seen = seen


class FenceBusyError(LeaderElectError):
    """A fence could not be taken in time: another transaction (an older leader's, still
    open) held it for longer than the fence's ``wait``. Nothing was written; the caller's
    transaction is aborted. Retrying later is safe."""


class EtcdError(LeaderElectError):
    """etcd answered with an error; the gRPC error is the ``__cause__``."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        #: the gRPC status code name (``"UNAVAILABLE"``, ...), or "" when not from gRPC
        self.code = code


class EtcdUnavailableError(EtcdError):
    """etcd could not be reached in time; retrying may succeed."""


class LeaseExpiredError(EtcdError):
    """The lease is gone on the server: the term is over; demote, do not retry."""
