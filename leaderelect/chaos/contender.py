"""One contender process: a real LeaderElector that records its history as JSON lines.

Every line has ``t`` (:func:`leaderelect.clock`, the clock ``valid_until`` is on: host-wide, so
all contenders share one clock), ``pid`` and ``ev``. While leading it acts every ~100 ms:
check ``is_leader``, record ``act``, then a fenced write guarded by the term's token
(``t_send`` is when the write was sent). After a pause (a loop gap over a second) it
tries one write with the *stale* term, bypassing the local check, to show that etcd itself
rejects it. ``SIGUSR2`` starts a GIL hog: a thread that holds the GIL ~0.5 s at a time for
``--gil-hog`` seconds. ``SIGHUP`` makes it ``resign()``. ``SIGWINCH`` arms a slow callback:
its next ``on_elected`` keeps working for ``--slow-callback`` seconds (work that outlives its
term). A thread records ``lost`` when it first reads ``elector.term`` as None after a term
(the library's own view, not a callback's). At exit it records what ``stop()`` left
behind (threads, sockets).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
from collections import Counter
from typing import IO, Any

from leaderelect import EtcdError, LeaderElector, Term, election
from leaderelect._clock import clock
from leaderelect._config import allowing_unsafe_guard

PERIOD = 0.1


class History:
    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self._lock = threading.Lock()

    def log(self, ev: str, **fields: Any) -> None:
        line = json.dumps({"t": clock(), "pid": os.getpid(), "ev": ev, **fields})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


def _hold_gil(seconds: float) -> None:
    """Hold the GIL for about *seconds*: sum() over a range runs in C without releasing it."""
    end = clock() + seconds
    chunk = 2_000_000
    while clock() < end:
        sum(range(chunk))


def _gil_hog(stop: threading.Event, total: float, history: History) -> None:
    history.log("gil_hog", seconds=total)
    end = clock() + total
    while clock() < end and not stop.is_set():
        _hold_gil(0.5)
        if stop.wait(0.2):
            return


def _fd_targets() -> list[str]:
    """What each open fd points at (Linux); empty elsewhere."""
    folder = f"/proc/{os.getpid()}/fd"
    targets = []
    for fd in os.listdir(folder) if os.path.isdir(folder) else []:
        with contextlib.suppress(OSError):  # the fd of the listing itself, closed meanwhile
            targets.append(os.readlink(os.path.join(folder, fd)))
    return sorted(targets)


def _sockets() -> list[str]:
    """Open sockets: connections are what stop() must close. (gRPC's process-wide pollers,
    eventfds and pipes are created lazily on first use and kept; they are not a leak.)"""
    return [t for t in _fd_targets() if t.startswith("socket:")]


def _sockets_after_stop(before: list[str], grace: float = 2.0) -> list[str]:
    """Sockets opened since *before* that are still open, after up to *grace* seconds
    (gRPC closes a channel's sockets on its own threads, shortly after close())."""
    deadline = clock() + grace
    while True:
        new = sorted((Counter(_sockets()) - Counter(before)).elements())
        if not new or clock() > deadline:
            return new
        threading.Event().wait(0.05)


def _stale_write(elector: LeaderElector, term: Term, data_key: str, history: History) -> None:
    """Send the old term's fenced write, bypassing the local check (3 tries: the connection
    may be re-established right after a pause)."""
    for _ in range(3):
        t_send = clock()
        try:
            accepted = election.fenced_txn(
                elector.session.client, term.key.encode(), term.token, {data_key.encode(): b"stale"}, []
            )
        except EtcdError as err:
            history.log("fenced_write", token=term.token, accepted=False, stale=True, error=str(err)[:200])
            continue
        history.log("fenced_write", token=term.token, accepted=accepted, stale=True, t_send=t_send)
        return


def _watch_term(elector: LeaderElector, stop: threading.Event, history: History) -> None:
    """Record ``lost`` when ``elector.term`` first reads None after a term, as any thread of
    the application would see it: every 20 ms, on a thread of its own (the main loop can be
    held up by its own writes to an unreachable etcd)."""
    held: Term | None = None
    while not stop.wait(0.02):
        term = elector.term
        if term is None and held is not None:
            history.log("lost", token=held.token, valid_until=held.valid_until)
        held = term


def _write_resources(
    writer: Any, term: Term, history: History, txn_asked: threading.Event, stop: threading.Event
) -> None:
    """A write to PostgreSQL and one to Redis, each through its fence; or, when asked, a
    guarded transaction left open for 3 s (the nemesis pauses the process meanwhile)."""
    if txn_asked.is_set():
        txn_asked.clear()
        try:
            writer.open_transaction(term)
        except Exception as err:
            history.log("txn_open", token=term.token, error=str(err)[:200])
            return
        history.log("txn_open", token=term.token)
        stop.wait(3.0)  # SIGSTOP arrives here; after SIGCONT the commit is tried
        history.log("txn_commit", token=term.token, accepted=writer.commit_open())
        return
    for resource, write in (("postgres", writer.write_postgres), ("redis", writer.write_redis)):
        try:
            write(term)
            history.log("resource_write", resource=resource, token=term.token, accepted=True)
        except Exception as err:  # refused (a newer term), busy, or unreachable: not accepted
            history.log("resource_write", resource=resource, token=term.token, accepted=False, error=type(err).__name__)


def _stale_resource_writes(writer: Any, token: int, history: History) -> None:
    """After a pause: the old term's writes to PostgreSQL and Redis, bypassing the local
    check; the fences must refuse them once a newer term wrote (S4 shows if they did not)."""
    for resource, write in (("postgres", writer.write_postgres), ("redis", writer.write_redis)):
        try:
            write(token)
            history.log("resource_write", resource=resource, token=token, accepted=True, stale=True)
        except Exception as err:
            error = type(err).__name__
            history.log("resource_write", resource=resource, token=token, accepted=False, stale=True, error=error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--ttl", type=int, default=2)
    parser.add_argument("--guard", type=float, default=None)
    parser.add_argument("--unsafe-guard", action="store_true", help="allow a negative guard (negative control)")
    parser.add_argument("--call-timeout", type=float, default=1.0)
    parser.add_argument("--keepalive-time", type=float, default=6.0, help="0 turns gRPC keepalive off")
    parser.add_argument("--history", required=True)
    parser.add_argument("--data-key", default=None, help="the key fenced writes go to")
    parser.add_argument("--gil-hog", type=float, default=3.0, help="seconds a SIGUSR2 GIL hog lasts")
    parser.add_argument("--slow-callback", type=float, default=5.0, help="seconds a SIGWINCH-armed on_elected works")
    parser.add_argument("--pg", default=None, help="a PostgreSQL DSN: also write through a PostgresFence")
    parser.add_argument("--redis", default=None, help="a Redis URL: also write through a RedisFence")
    parser.add_argument("--unguarded", action="store_true", help="write to PostgreSQL/Redis without the fences")
    parser.add_argument("--user", default=None)
    parser.add_argument("--password", default=None)
    args = parser.parse_args(argv)

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to stderr
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(threadName)s %(message)s")
    history = History(args.history)
    stop = threading.Event()
    hog_stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def start_hog(*_: Any) -> None:
        thread = threading.Thread(target=_gil_hog, args=(hog_stop, args.gil_hog, history), name="gil-hog")
        thread.daemon = True
        thread.start()

    signal.signal(signal.SIGUSR2, start_hog)
    resign_asked = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: resign_asked.set())
    slow_armed = threading.Event()
    signal.signal(signal.SIGWINCH, lambda *_: slow_armed.set())
    txn_asked = threading.Event()  # SIGURG: leave a guarded PostgreSQL transaction open (to be paused)
    signal.signal(signal.SIGURG, lambda *_: txn_asked.set())

    sockets_before = _sockets()
    # The negative control's negative guard is accepted only inside this block (this
    # process is a contender and nothing else).
    with allowing_unsafe_guard() if args.unsafe_guard else contextlib.nullcontext():
        elector = LeaderElector(
            args.name,
            f"pid-{os.getpid()}",
            endpoints=args.endpoints,
            ttl=args.ttl,
            guard=args.guard,
            call_timeout=args.call_timeout,
            keepalive_time=args.keepalive_time or None,
            user=args.user,
            password=args.password,
        )

    def elected(term: Term) -> None:
        history.log("elected", token=term.token, valid_until=term.valid_until, lease=term.lease_id)
        if slow_armed.is_set():
            slow_armed.clear()
            history.log("slow_callback", token=term.token, seconds=args.slow_callback)
            stop.wait(args.slow_callback)  # the term's work outlives the term
            history.log("slow_callback_done", token=term.token)

    elector.on_elected(elected)
    elector.on_demoted(lambda term, reason: history.log("demoted", token=term.token, reason=str(reason)))
    elector.on_leader_changed(
        lambda leader: history.log(
            "leader_changed", token=leader.token if leader else None, value=leader.value if leader else None
        )
    )
    data_key = args.data_key or f"{args.name}-data"
    writer = None
    if args.pg and args.redis:
        from leaderelect.chaos.resources import Writer

        writer = Writer(args.pg, args.redis, guarded=not args.unguarded, wait=2.0 * args.ttl)
    history.log("start", ttl=args.ttl, sockets=len(sockets_before))
    elector.start()
    threading.Thread(target=_watch_term, args=(elector, stop, history), name="term-watch", daemon=True).start()
    last_term: Term | None = None
    last_loop = clock()
    leases: set[int] = set()
    try:
        while not stop.wait(PERIOD):
            now = clock()
            current = elector.term
            ended = current is None or last_term is None or current.token != last_term.token
            if now - last_loop > 1.0 and last_term is not None and ended:
                # We were paused. Try the stale term's write straight at etcd: it must be rejected.
                history.log("resumed", gap=now - last_loop, is_leader=elector.is_leader)
                _stale_write(elector, last_term, data_key, history)
                if writer is not None:  # and at the fences, past the local check (a bare token)
                    _stale_resource_writes(writer, last_term.token, history)
            last_loop = now
            if resign_asked.is_set():
                resign_asked.clear()
                t_resign = clock()
                stepped_down = elector.resign()
                history.log("resign", stepped_down=stepped_down, seconds=clock() - t_resign)
            t_check = clock()  # read before is_leader: the term was valid at or after it
            term = elector.term
            if term is None:
                continue
            last_term = term
            leases.add(term.lease_id)
            history.log("act", token=term.token, valid_until=term.valid_until, t_check=t_check)
            t_send = clock()
            try:
                accepted = elector.fenced_put(data_key, f"{os.getpid()}:{term.token}", term=term)
            except EtcdError as err:  # an unreachable etcd: the write is neither accepted nor lost
                history.log("fenced_write", token=term.token, accepted=False, error=str(err)[:200])
                continue
            history.log("fenced_write", token=term.token, accepted=accepted, t_send=t_send)
            if writer is not None:
                _write_resources(writer, term, history, txn_asked, stop)
    finally:
        hog_stop.set()
        t_stop = clock()
        lease = elector.session.lease
        elector.stop()
        if writer is not None:
            writer.close()  # its sockets are the contender's, not the library's
        left = [t.name for t in threading.enumerate() if t.name.startswith("leaderelect-")]
        history.log(
            "exit",
            stop_seconds=clock() - t_stop,
            threads_left=left,
            sockets_left=_sockets_after_stop(sockets_before),
            leases=sorted(leases | ({lease.id} if lease else set())),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
