"""Which threads are leaderelect's own.

A blocking call made on one of them may wait for that very thread (a ``Session.close()``
from an ``on_elected`` callback waits for the elector, whose ``on_demoted`` runs on the
callback thread after it); such a call hands its waiting to a thread of its own instead.
"""

from __future__ import annotations

import threading
from typing import Callable

_local = threading.local()


def ours(run: Callable[[], None]) -> Callable[[], None]:
    """*run*, marking the thread that runs it as one of leaderelect's (a thread's target)."""

    def marked() -> None:
        _local.ours = True
        run()

    return marked


def on_our_thread() -> bool:
    """True on a thread started with :func:`ours`: a callback, lane, timer, observer or
    watch thread (not an elector's finishing thread: it must wait for its own session's
    close)."""
    return bool(getattr(_local, "ours", False))
