"""A session: one lease shared by one or more elections (etcd's ``concurrency.Session``).

An elector without a shared session has a session of its own (``shared=False``): stopping
the election closes it, and closing revokes the lease. On a shared session the lease
outlives any one election, so a stopped election must take its key out of the queue itself:
the session deletes it, retrying until the delete is answered or the lease ends. Tried once,
a delete lost to a connection reset left the key on a lease the session kept renewing, and
that election had no leader for as long as the session lived.

Inputs go to the session (:meth:`answer`, :meth:`watch`, :meth:`tick`, :meth:`callback_done`);
actions come out tagged with their ``origin`` (the election's name, or "" for the session's
own calls: grants, renewals, revokes, withdrawals).
"""

from __future__ import annotations

import random
from typing import Protocol

from leaderelect.core.base import Config, Context, Mutations, call_deadline, retry_wait
from leaderelect.core.lease import LeaseKeeper, LeaseState
from leaderelect.core.messages import Action, Answer, Delete, Failed, WatchMessage


class Member(Protocol):
    """What a session needs of an election on it (``ElectionCore``)."""

    @property
    def name(self) -> str: ...

    def lease_granted(self, now: float, lease: LeaseState) -> None: ...

    def lease_lost(self, now: float, lease: LeaseState) -> None: ...

    def watch_message(self, now: float, watch_id: int, message: WatchMessage) -> None: ...

    def delivered(self, now: float, seq: int) -> None: ...

    def settle(self, now: float) -> None: ...

    def withdrawal_done(self, now: float) -> None: ...


class _Withdrawal:
    __slots__ = ("attempt", "call", "key", "lease", "token")

    def __init__(self, key: str, token: int | None, lease: LeaseState) -> None:
        self.key = key
        self.token = token
        self.lease = lease
        self.call: int | None = None
        self.attempt = 0


class SessionCore:
    """One lease (a :class:`LeaseKeeper`) and the elections on it."""

    def __init__(
        self, config: Config, rng: random.Random, mutations: Mutations | None = None, *, shared: bool = True
    ) -> None:
        self.config = config
        self.shared = shared
        self.ctx = Context(config, rng, mutations)
        self.lease_keeper = LeaseKeeper(self.ctx, self._granted, self._lost)
        self.members: list[Member] = []
        self._withdrawals: dict[str, _Withdrawal] = {}
        #: elections whose key's delete is in flight though withdrawing was cancelled
        self._draining: dict[str, _Withdrawal] = {}
        self._started = False
        #: withdrawals begun, and those that needed more than one try
        self.withdrawals = 0
        self.withdrawal_retries = 0

    def context_for(self, config: Config) -> Context:
        """The context an election on this session runs in."""
        return self.ctx.scope(config, config.name) if self.shared else self.ctx

    def attach(self, member: Member) -> None:
        """A new election: a withdrawal of an earlier election of its name is dropped (the new
        one may adopt the key; one already in flight finishes first, see :meth:`withdrawing`)."""
        old = self._withdrawals.pop(member.name, None)
        if old is not None and old.call is not None:
            self._draining[member.name] = old
        self.members.append(member)

    def detach(self, member: Member) -> None:
        if member in self.members:
            self.members.remove(member)

    def withdrawing(self, name: str) -> bool:
        """A delete of election *name*'s key is in flight: joining now could see the key
        adopted and then deleted under it."""
        return name in self._draining

    # -- inputs ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        if not self._started:
            self._started = True
            self.lease_keeper.start(now)

    def answer(self, now: float, call_id: int, answer: Answer) -> list[Action]:
        self.ctx.run_timers(now)  # the deadline before the answer that may come too late
        self.ctx.answer(now, call_id, answer)
        return self._settle(now)

    def watch(self, now: float, watch_id: int, message: WatchMessage) -> list[Action]:
        self.ctx.run_timers(now)
        for member in list(self.members):
            member.watch_message(now, watch_id, message)  # each ignores the others' watches
        return self._settle(now)

    def callback_done(self, now: float, seq: int) -> list[Action]:
        self.ctx.run_timers(now)
        for member in list(self.members):
            member.delivered(now, seq)  # sequence numbers are unique in the session
        return self._settle(now)

    def tick(self, now: float) -> list[Action]:
        self.ctx.run_timers(now)
        return self._settle(now)

    def wake_at(self) -> float | None:
        return self.ctx.wake_at()

    def take(self) -> list[Action]:
        return self.ctx.take()

    def _settle(self, now: float) -> list[Action]:
        for member in list(self.members):
            member.settle(now)
        return self.ctx.take()

    # -- the lease, for every election on it ------------------------------------------------------

    def _granted(self, now: float, lease: LeaseState) -> None:
        for member in list(self.members):
            member.lease_granted(now, lease)

    def _lost(self, now: float, lease: LeaseState) -> None:
        for name, withdrawal in list(self._withdrawals.items()):
            if withdrawal.lease is lease and withdrawal.call is None:
                del self._withdrawals[name]  # the key goes with the lease
        for member in list(self.members):
            member.lease_lost(now, lease)

    # -- withdrawals ----------------------------------------------------------------------------

    def withdraw(self, now: float, name: str, key: str, token: int | None, lease: LeaseState) -> None:
        """Delete election *name*'s *key* (created at revision *token*, if known) for sure:
        retried until a delete is answered or *lease* ends (its keys go with it)."""
        self.withdrawals += 1
        self._withdrawals[name] = withdrawal = _Withdrawal(key, token, lease)
        self._try_withdraw(now, name, withdrawal)

    def _try_withdraw(self, now: float, name: str, withdrawal: _Withdrawal) -> None:
        if self._withdrawals.get(name) is not withdrawal:
            return  # cancelled by a new election of the name
        if not withdrawal.lease.alive(now):
            del self._withdrawals[name]  # its keys go with it
            return
        withdrawal.attempt += 1
        withdrawal.call = self.ctx.call(
            Delete(withdrawal.key, withdrawal.token),
            call_deadline(self.config.call_timeout, withdrawal.lease.remaining(now)),
            lambda t, a: self._withdrawn(t, a, name, withdrawal),
        )

    def _withdrawn(self, now: float, answer: Answer, name: str, withdrawal: _Withdrawal) -> None:
        withdrawal.call = None
        if self._draining.get(name) is withdrawal:
            del self._draining[name]
            for member in list(self.members):
                if member.name == name:
                    member.withdrawal_done(now)
            return
        if self._withdrawals.get(name) is not withdrawal:
            return
        if isinstance(answer, Failed) and not self.ctx.mutations.withdraw_once:
            self.withdrawal_retries += 1
            self.ctx.set_timer(
                f"withdraw.{name}",
                now + retry_wait(self.ctx.rng, withdrawal.attempt),
                lambda t: self._try_withdraw(t, name, withdrawal),
            )
            return
        del self._withdrawals[name]  # deleted, or it was not there

    def pending_withdrawals(self) -> int:
        return len(self._withdrawals) + len(self._draining)
