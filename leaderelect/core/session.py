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
from typing import Callable, Protocol

from leaderelect.core.base import Config, Context, Mutations, call_deadline
from leaderelect.core.lease import LeaseKeeper, LeaseState
from leaderelect.core.messages import Action, Answer, Delete, DemotionReason, Failed, Finished, WatchMessage

#: seconds between tries of a withdrawal's delete (the driver retries on the same timer)
WITHDRAW_RETRY = 0.25


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

    def stop_for(self, now: float, reason: DemotionReason) -> None: ...


class _Withdrawal:
    __slots__ = ("attempt", "call", "first_answered", "key", "lease", "token")

    def __init__(self, key: str, token: int | None, lease: LeaseState, first_answered: Callable[[float], None]) -> None:
        self.key = key
        self.token = token
        self.lease = lease
        self.call: int | None = None
        self.attempt = 0
        #: the stopping election finishes once the first try is over (as the threaded stop)
        self.first_answered: Callable[[float], None] | None = first_answered

    def first_over(self, now: float) -> None:
        done, self.first_answered = self.first_answered, None
        if done is not None:
            done(now)


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
        #: elections waiting to join until a predecessor's delete in flight is answered
        self._waiting: set[str] = set()
        self._started = False
        self._closing = False
        #: the session closed and revoked its lease: Finished("") went out
        self.finished = False
        #: withdrawals begun, keys they deleted, tries after the first, keys adopted instead,
        #: and joins that waited for a delete in flight
        self.withdrawals = 0
        self.withdrawn = 0
        self.withdrawal_retries = 0
        self.adopted = 0
        self.waited = 0

    def context_for(self, config: Config) -> Context:
        """The context an election on this session runs in: on a shared session, a scope of
        the session's with the session's lease settings (ttl, guard, call deadline)."""
        if not self.shared:
            return self.ctx
        lease = self.config
        scoped = config._replace(ttl=lease.ttl, guard=lease.guard, call_timeout=lease.call_timeout)
        return self.ctx.scope(scoped, config.name)

    def attach(self, member: Member) -> None:
        """A new election; one name has one election at a time on a session (two would share
        one key, and both would take it for their own term)."""
        if self._closing:
            raise ValueError("the session is closed")
        if any(m.name == member.name for m in self.members):
            raise ValueError(f"election {member.name!r} already has an election on this session")
        self.members.append(member)

    @property
    def closing(self) -> bool:
        """close() was called (no election may join any more)."""
        return self._closing

    def detach(self, member: Member) -> None:
        if member in self.members:
            self.members.remove(member)

    def may_join(self, name: str) -> bool:
        """Election *name* is about to join. A predecessor's pending withdrawal is dropped
        now, not earlier: the join adopts the key, and the new election withdraws it when it
        stops. While that delete is in flight, wait (``withdrawal_done`` follows its answer):
        a join now could adopt the key and see it deleted under it."""
        withdrawal = self._withdrawals.get(name)
        if withdrawal is None:
            return True
        if withdrawal.call is not None:
            if name not in self._waiting:
                self.waited += 1
            self._waiting.add(name)
            return False
        del self._withdrawals[name]
        self.ctx.cancel_timer(f"withdraw {name}")
        self.adopted += 1
        return True

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

    def close(self, now: float) -> list[Action]:
        """Close a shared session, as ``Session.close()``: every election on it stops (a
        leader steps down first, ``on_demoted`` gets "session closed"); then the lease is
        revoked (keys waiting to be withdrawn go with it) and ``Finished("")`` follows."""
        self.ctx.run_timers(now)
        if not self._closing:
            self._closing = True
            for member in list(self.members):
                member.stop_for(now, DemotionReason.SESSION_CLOSED)
        return self._settle(now)

    def _settle(self, now: float) -> list[Action]:
        for member in list(self.members):
            member.settle(now)
        if self._closing and not self.members and not self.finished:
            if not self.lease_keeper.closing:
                for name in list(self._withdrawals):
                    self.ctx.cancel_timer(f"withdraw {name}")
                    self._end_withdrawal(now, name)  # the revoke takes the keys
                self.lease_keeper.close(now)
            if self.lease_keeper.closed:
                self.finished = True
                self.ctx.out.append(Finished(""))
        return self.ctx.take()

    # -- the lease, for every election on it ------------------------------------------------------

    def _granted(self, now: float, lease: LeaseState) -> None:
        for member in list(self.members):
            member.lease_granted(now, lease)

    def _lost(self, now: float, lease: LeaseState) -> None:
        for name, withdrawal in list(self._withdrawals.items()):
            if withdrawal.lease is lease and withdrawal.call is None:
                self._end_withdrawal(now, name)  # the key goes with the lease
        for member in list(self.members):
            member.lease_lost(now, lease)

    # -- withdrawals ----------------------------------------------------------------------------

    def withdraw(
        self,
        now: float,
        name: str,
        key: str,
        token: int | None,
        lease: LeaseState,
        first_answered: Callable[[float], None],
    ) -> None:
        """Delete election *name*'s *key* (created at revision *token*, if known) for sure:
        retried until a delete is answered or *lease* ends (its keys go with it).
        *first_answered(now)* runs once the first try is over."""
        self.withdrawals += 1
        self._withdrawals[name] = withdrawal = _Withdrawal(key, token, lease, first_answered)
        self._try_withdraw(now, name, withdrawal)

    def _try_withdraw(self, now: float, name: str, withdrawal: _Withdrawal) -> None:
        if self._withdrawals.get(name) is not withdrawal:
            return  # adopted by a new election of the name
        if not withdrawal.lease.alive(now):
            self._end_withdrawal(now, name)  # its keys go with it
            return
        withdrawal.attempt += 1
        withdrawal.call = self.ctx.call(
            Delete(withdrawal.key, withdrawal.token),
            call_deadline(self.config.call_timeout, withdrawal.lease.remaining(now)),
            lambda t, a: self._withdrawn(t, a, name, withdrawal),
        )

    def _withdrawn(self, now: float, answer: Answer, name: str, withdrawal: _Withdrawal) -> None:
        withdrawal.call = None
        withdrawal.first_over(now)
        if self._withdrawals.get(name) is not withdrawal:
            return
        if isinstance(answer, Failed) and not self.ctx.mutations.withdraw_once:
            self.withdrawal_retries += 1
            self.ctx.set_timer(
                f"withdraw {name}", now + WITHDRAW_RETRY, lambda t: self._try_withdraw(t, name, withdrawal)
            )
            self._wake(now, name)  # a new election of the name may adopt the key now
            return
        if answer is True:
            self.withdrawn += 1
        self._end_withdrawal(now, name)  # deleted, or it was not there

    def _end_withdrawal(self, now: float, name: str) -> None:
        withdrawal = self._withdrawals.pop(name)
        withdrawal.first_over(now)
        self._wake(now, name)

    def _wake(self, now: float, name: str) -> None:
        if name in self._waiting:
            self._waiting.discard(name)
            for member in list(self.members):
                if member.name == name:
                    member.withdrawal_done(now)

    def pending_withdrawals(self) -> int:
        return len(self._withdrawals)
