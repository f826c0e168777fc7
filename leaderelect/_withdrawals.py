"""Candidate keys of stopped electors on a shared session, deleted for sure.

On a shared session the lease outlives the elector that stops: a candidate key whose delete
failed (etcd unreachable at that moment) would sit in the queue on a lease kept alive for as
long as the session lives, and the candidates behind it would wait for ever. Such keys are
retried here, on a thread of their own (never the renewal thread: a slow delete must not
delay a renewal), until each is gone or its lease has ended.

An earlier elector's key may be adopted by a new elector of the same name on the same
session (same lease, same key). Its campaign calls :meth:`Withdrawals.cancel` as it joins
(not before: a new elector stopped before it joins withdraws nothing), which waits for a delete
in flight: no delete of the earlier elector can land after the new one campaigned.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from leaderelect import election
from leaderelect._etcd import EtcdClient
from leaderelect.core.session import WITHDRAW_RETRY
from leaderelect.exceptions import EtcdError

log = logging.getLogger(__name__)


class _Lease(Protocol):  # what is needed of a session.Lease
    def alive(self) -> bool: ...  # pragma: no cover

    def remaining(self) -> float: ...  # pragma: no cover


@dataclass(frozen=True, eq=False)
class _Pending:
    key: bytes
    #: the key's create revision when known; None: delete whatever is at the key
    token: int | None
    lease: _Lease


class Withdrawals:
    """Pending deletes of candidate keys, by election name."""

    def __init__(self, client: EtcdClient, call_timeout: float, name: str) -> None:
        self._client = client
        self._call_timeout = call_timeout
        self._name = name
        self._lock = threading.Lock()  # guards _pending, _in_flight and _thread
        self._answered = threading.Condition(self._lock)  # notified when a delete in flight ends
        self._in_flight: str | None = None  # the election whose delete is in flight
        self._pending: dict[str, _Pending] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, election_name: str, key: bytes, token: int | None, lease: _Lease) -> None:
        """Delete *key* (created at revision *token*, if known) until it is gone or *lease* ended."""
        with self._lock:
            if self._stop.is_set():
                return  # closing: the session revokes the lease, and the key goes with it
            self._pending[election_name] = _Pending(key, token, lease)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"leaderelect-withdraw-{self._name}", daemon=True
                )
                self._thread.start()

    def cancel(self, election_name: str) -> None:
        """A new elector of *election_name* campaigns on this session: drop its predecessor's
        pending delete, after waiting for one of that election in flight (bounded by its
        call deadline; another election's delete in flight is not waited for)."""
        with self._lock:
            self._pending.pop(election_name, None)
            self._answered.wait_for(lambda: self._in_flight != election_name, self._call_timeout + 1)

    def close(self, timeout: float) -> None:
        with self._lock:
            self._stop.set()
            self._pending.clear()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                names = list(self._pending)
                if not names or self._stop.is_set():
                    self._thread = None
                    return
            for name in names:
                self._try(name)
            if self._stop.wait(WITHDRAW_RETRY):  # between tries of a key not yet deleted
                with self._lock:
                    self._thread = None
                return

    def _try(self, name: str) -> None:
        with self._lock:
            entry = self._pending.get(name)  # cancelled meanwhile?
            if entry is None:
                return
            self._in_flight = name
        done = False
        try:
            done = not entry.lease.alive()  # the key goes with its lease
            if not done:
                timeout = max(0.001, min(self._call_timeout, entry.lease.remaining()))
                try:
                    election.withdraw(self._client, entry.key, entry.token, timeout=timeout)
                    done = True
                    log.info("[%s] candidate key %s withdrawn", self._name, entry.key.decode("utf-8", "replace"))
                except EtcdError as err:
                    log.info("[%s] withdrawing %s failed (%s); retrying", self._name, entry.key.decode(), err)
                except Exception:  # a bug must not leave the thread dead with keys pending
                    log.exception("[%s] withdrawing %s failed; retrying", self._name, entry.key.decode())
        finally:
            with self._lock:
                if done and self._pending.get(name) is entry:
                    del self._pending[name]
                self._in_flight = None
                self._answered.notify_all()
