"""The simulated world: candidates running the real core, a network, a simulated etcd, faults.

One event queue ordered by true time (ties by insertion order) drives everything; nothing
reads a real clock or a real socket, so a seed replays exactly. Each candidate has a clock of
its own (offset and rate), one connection to etcd that delivers in order in each direction
(delays differ across connections, so messages reorder across them), and a dispatcher that
runs its callbacks one at a time for a simulated while.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from typing import Any, Callable

from leaderelect.core import Config, ElectionCore, Mutations, Phase
from leaderelect.core.follow import candidate_of
from leaderelect.core.lease import LeaseState
from leaderelect.core.messages import (
    Action,
    Call,
    Change,
    CloseWatch,
    Confirm,
    Deliver,
    Demoted,
    Elected,
    Failed,
    Failure,
    Finished,
    OpenWatch,
    ReadQueue,
    ResignDone,
    Revoke,
    Snapshot,
    WatchCreated,
    WatchEnded,
    WatchEvents,
    WatchMessage,
    WatchProgress,
    WatchState,
)
from leaderelect.core.queue import CandidateQueue
from leaderelect.core.session import SessionCore
from leaderelect.sim.etcd import EXPIRY_CHECK, SimEtcd, SimWatch
from leaderelect.sim.plan import Fault, Plan

NAME = "sim"
#: the second election on a shared session (its callbacks return at once; it is not checked)
COMPANION = "sim-other"
#: a cut shorter than this only delays traffic (TCP retransmits); a longer one breaks the stream
HOLD = 1.0
#: after a long cut, the client's keepalive notices the broken stream this much later
DETECT = 1.5
#: an auth token unused this long has expired: a watch opened with it is refused once
TOKEN_TTL = 2.0
#: seconds between progress answers on each watch (the client's probe)
PROGRESS_EVERY = 2.0


class TermRecord:
    __slots__ = ("end", "incarnation", "key", "lease", "node", "start", "token")

    def __init__(self, node: int, incarnation: int, key: str, token: int, start: float, lease: LeaseState) -> None:
        self.node = node
        self.key = key
        self.incarnation = incarnation
        self.token = token
        self.start = start
        self.end: float | None = None
        self.lease = lease


class Node:
    """One candidate process (a new incarnation after each restart)."""

    def __init__(self, world: World, index: int) -> None:
        rng = world.rng
        plan = world.plan
        self.world = world
        self.index = index
        self.rate = 1.0 + rng.uniform(-plan.clock_error, plan.clock_error)
        self.offset = rng.uniform(0, 1000)
        self.session = Link(rng.uniform(0.0002, 0.002))
        self.observe = Link(rng.uniform(0.0002, 0.002))
        self.broken: set[int] = set()  # watches whose stream broke (their WatchEnded is on its way)
        self.incarnation = 0
        self.core: ElectionCore | None = None
        #: on a shared session: the session, and the election beside ours that keeps it alive
        self.sharing: SessionCore | None = None
        self.companion: ElectionCore | None = None
        #: when the shared session finished closing (nothing may be sent after)
        self.session_closed_at: float | None = None
        self.alive = False
        self.paused_until = 0.0
        self.held_until = 0.0  # messages that arrived while paused are delivered from here, in order
        self.wake_token = 0
        self.wake_at: float | None = None
        self.cuts: list[tuple[float, float]] = []
        self.slow: list[tuple[float, float, float]] = []
        self.slow_callbacks: list[tuple[float, float]] = []
        self.pending: set[int] = set()
        self.watches: dict[int, SimWatch] = {}
        #: fed as the threaded driver feeds a core (World(shared_views=True), odd nodes): the
        #: whole queue in a WatchState per watch message, kept here from the read before it
        self.shared_view = False
        self.reads: dict[int, str] = {}  # ReadQueue call id -> prefix
        self.snapshots: dict[str, CandidateQueue] = {}  # prefix -> the queue of its last read
        self.queues: dict[int, tuple[str, CandidateQueue]] = {}  # watch id -> (prefix, its queue)
        self.dispatch: deque[Deliver] = deque()
        self.dispatching = False
        self.term: TermRecord | None = None
        #: per incarnation: on_elected/on_demoted as the core handed them over ("elected"/"demoted", token)
        self.callbacks: list[list[tuple[str, int]]] = []
        self.stop_asked: float | None = None
        self.finished_at: list[float | None] = []
        self.calls = 0

    # -- clocks --------------------------------------------------------------------------------

    def local(self, t: float) -> float:
        return self.offset + self.rate * t

    def true(self, local: float) -> float:
        return (local - self.offset) / self.rate

    # -- the links ------------------------------------------------------------------------------

    def delay(self, link: Link, t: float) -> float:
        delay = link.base_delay * (1 + self.world.rng.expovariate(1.0))
        for start, end, extra in self.slow:
            if start <= t < end:
                delay += extra * self.world.rng.random()
        return delay

    def _arrival(self, link: Link, t: float, after: float) -> float | None:
        """When a message sent on *link* at *t* arrives, in order after one that arrived at
        *after* (None: lost with a broken stream)."""
        for start, end in self.cuts:
            if start <= t < end:
                if end - start > HOLD:
                    return None
                t = max(t, end)  # held back (a short cut delays, as TCP retransmits)
        return max(t + self.delay(link, t), after)

    def up(self, link: Link, t: float) -> float | None:
        """When a message sent on *link* now reaches etcd."""
        arrive = self._arrival(link, t, link.last_up)
        if arrive is not None:
            link.last_up = arrive
        return arrive

    def down(self, link: Link, t: float) -> float | None:
        """When a message etcd sends on *link* now reaches this candidate."""
        arrive = self._arrival(link, t, link.last_down)
        if arrive is not None:
            link.last_down = arrive
        return arrive


class Link:
    """One connection to etcd: in order in each direction. A candidate has two, as in
    production: its session's (lease, campaign) and its observer's (the queue and its watch)."""

    __slots__ = ("base_delay", "last_down", "last_up", "token_used")

    def __init__(self, base_delay: float) -> None:
        self.base_delay = base_delay
        self.last_up = 0.0
        self.last_down = 0.0
        self.token_used = 0.0


class World:
    def __init__(self, plan: Plan, mutations: Mutations | None = None, *, shared_views: bool = True) -> None:
        self.plan = plan
        self.mutations = mutations or Mutations()
        self.rng = random.Random(plan.seed * 7919 + 1)
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.etcd = SimEtcd(first_lease=0x7E57_0000 + self.rng.randrange(1 << 20))
        self.etcd_state = "up"  # "down" (restarting) or "no quorum"
        self.watches_denied_until = 0.0
        self.leader_changed_at = -1.0
        self.denials: list[tuple[float, float]] = []  # when every new watch was refused
        self.stalled: list[tuple[Node, int, Link, Call]] = []
        #: calls a core sent after it had finished (a bug)
        self.after_finish: list[str] = []
        #: terms a core began although its own view already showed their key deleted (a bug)
        self.blind_terms: list[str] = []
        self.nodes = [Node(self, i) for i in range(plan.nodes)]
        for node in self.nodes:
            # The core decides the same on either feed, so a seed's schedule is the same too
            # (tests/sim checks it): half the nodes take the threaded driver's.
            node.shared_view = shared_views and node.index % 2 == 1
        self.terms: list[TermRecord] = []
        #: every core that ran, in launch order
        self.cores: list[ElectionCore] = []
        self.events = 0
        self.heal_time = 0.0
        #: called with a line for every action, answer, watch message and fault (replay --trace)
        self.trace: Callable[[str], None] | None = None
        self.resigns: list[tuple[int, bool]] = []
        #: everyone is being stopped at the end of the run: no restarts any more
        self.stopping_all = False
        #: (key, create revision) -> when etcd last answered a confirmation of it with True
        self.confirmed: dict[tuple[str, int], float] = {}
        #: (key, create revision) -> when someone other than its candidate deleted it
        self.operator_deleted: dict[tuple[str, int], float] = {}
        self.settings = Config(
            name=NAME,
            value=b"",
            ttl=plan.ttl,
            guard=plan.guard,
            call_timeout=plan.call_timeout,
            demote_timeout=plan.demote_timeout,
        )

    # -- the event queue ---------------------------------------------------------------------

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def run(self, until: float, max_events: int = 2_000_000) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            t, _, fn, args = heapq.heappop(heap)
            self.now = t
            self.events += 1
            if self.events > max_events:
                raise RuntimeError(f"more than {max_events} events: a spin")
            fn(*args)
        self.now = until

    def to_node(self, t: float, node: Node, incarnation: int, fn: Callable[..., None], *args: Any) -> None:
        """Schedule *fn(node, *args)* for this incarnation of *node* (deferred while it is paused)."""
        self.at(t, self._node_event, node, incarnation, fn, args)

    def _node_event(self, node: Node, incarnation: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        if not node.alive or node.incarnation != incarnation:
            return
        # Timers and callback completions are the process's own threads; messages come over
        # its connections. After SIGCONT the threads run in no set order, so the former may
        # come anywhere among the latter, while each connection keeps its order.
        timer = fn == self._tick or fn == self._callback_done or fn == self._companion_done
        if node.paused_until > self.now or (not timer and self.now < node.held_until):
            if timer:
                resume = node.paused_until + self.rng.uniform(0, 1e-6)
            else:
                node.held_until = resume = max(node.held_until, node.paused_until + 5e-7)
            self.at(resume, self._node_event, node, incarnation, fn, args)
            return
        fn(node, *args)

    # -- candidates ------------------------------------------------------------------------------

    def launch(self, node: Node) -> None:
        node.incarnation += 1
        node.alive = True
        config = self.settings._replace(value=f"n{node.index}".encode())
        rng = random.Random(self.plan.seed * 31 + node.index * 1009 + node.incarnation)
        if node.index < len(self.plan.shared) and self.plan.shared[node.index]:
            node.sharing = SessionCore(config, rng, self.mutations)
            node.core = ElectionCore(config, rng, self.mutations, session=node.sharing)
            node.companion = ElectionCore(config._replace(name=COMPANION), rng, self.mutations, session=node.sharing)
        else:
            node.sharing = node.companion = None
            node.core = ElectionCore(config, rng, self.mutations)
        node.session_closed_at = None
        self.cores.append(node.core)
        node.pending.clear()
        node.watches.clear()
        node.broken.clear()
        node.reads.clear()
        node.snapshots.clear()
        node.queues.clear()
        node.session = Link(node.session.base_delay)  # a new process: new connections
        node.observe = Link(node.observe.base_delay)
        node.dispatch.clear()
        node.dispatching = False
        node.callbacks.append([])
        node.finished_at.append(None)
        node.stop_asked = None
        actions = node.core.start(node.local(self.now))
        if node.companion is not None:
            actions += node.companion.start(node.local(self.now))
        self._apply(node, actions)

    def kill(self, node: Node) -> None:
        if not node.alive:
            return
        self._close_term(node)
        for watch in node.watches.values():
            self.etcd.cancel(watch)
        node.watches.clear()
        node.alive = False
        node.core = node.sharing = node.companion = None

    def _apply(self, node: Node, actions: list[Action]) -> None:
        core = node.core
        assert core is not None
        now = self.now
        if self.trace is not None:
            for action in actions:
                self.trace(f"{now:9.4f} n{node.index} {core.phase.value:13} {action}")
        for action in actions:
            kind = type(action)
            if kind is Finished and not action.origin and node.sharing is not None:
                node.session_closed_at = now  # the shared session's own Finished
                continue
            if action.origin == COMPANION and kind not in (Call, OpenWatch, CloseWatch):
                if kind is Deliver:  # its user callbacks return at once
                    self.to_node(self.now, node, node.incarnation, self._companion_done, action.seq)  # type: ignore[union-attr]
                continue
            if kind is Call:
                self._send(node, action)  # type: ignore[arg-type]
            elif kind is Deliver:
                callback = action.callback  # type: ignore[union-attr]
                if isinstance(callback, (Elected, Demoted)):
                    # as the core hands them over: a kill may stop the dispatcher before it
                    # runs them, which is the process's fate, not the core's doing
                    node.callbacks[-1].append(
                        ("elected" if isinstance(callback, Elected) else "demoted", callback.term.token)
                    )
                node.dispatch.append(action)  # type: ignore[arg-type]
                if not node.dispatching:
                    self._next_callback(node)
            elif kind is OpenWatch:
                self._open_watch(node, action)  # type: ignore[arg-type]
            elif kind is CloseWatch:
                watch = node.watches.pop(action.watch_id, None)  # type: ignore[union-attr]
                if watch is not None:
                    self.etcd.cancel(watch)
            elif kind is Finished:
                node.finished_at[-1] = now
            elif kind is ResignDone:
                self.resigns.append((node.index, action.stepped_down))  # type: ignore[union-attr]
        # leadership as the core sees it now
        term = core.term
        current = node.term
        if current is not None and (term is None or term.token != current.token):
            self._close_term(node)
        if term is not None and node.term is None and core.phase is Phase.LEADING:
            lease = core.lease
            assert lease is not None
            record = TermRecord(node.index, node.incarnation, term.key, term.token, now, lease)
            if core.follower.position(term.key, term.token).gone:
                self.blind_terms.append(
                    f"node {node.index} began term {term.token} though its view showed its key gone"
                )
            node.term = record
            self.terms.append(record)
        wake = core.wake_at()
        if wake != node.wake_at:
            node.wake_at = wake
            node.wake_token += 1
            if wake is not None:
                self.to_node(max(now, node.true(wake)), node, node.incarnation, self._tick, node.wake_token, wake)

    def _close_term(self, node: Node) -> None:
        record = node.term
        if record is not None:
            record.end = min(self.now, node.true(record.lease.valid_until))
            node.term = None

    def _tick(self, node: Node, token: int, wake: float) -> None:
        if token != node.wake_token or node.core is None:
            return
        node.wake_at = None
        self._apply(node, node.core.tick(max(node.local(self.now), wake)))

    # -- calls -----------------------------------------------------------------------------------

    def _send(self, node: Node, call: Call) -> None:
        node.calls += 1
        if node.session_closed_at is not None:
            self.after_finish.append(f"node {node.index} sent {call.request} after its session closed")
        elif node.finished_at[-1] is not None and call.origin != COMPANION and (node.sharing is None or call.origin):
            # (on a shared session the session's own calls go on: renewals, withdrawals)
            self.after_finish.append(f"node {node.index} sent {call.request} after it finished")
        node.pending.add(call.call_id)
        if isinstance(call.request, ReadQueue):
            node.reads[call.call_id] = call.request.prefix
        inc = node.incarnation
        deadline = self.now + call.timeout / node.rate
        self.to_node(deadline, node, inc, self._answer, call.call_id, Failed(Failure.TIMEOUT))
        link = node.observe if isinstance(call.request, ReadQueue) else node.session
        arrive = node.up(link, self.now)
        if arrive is not None:
            self.at(arrive, self._at_etcd, node, inc, link, call)

    def _at_etcd(self, node: Node, inc: int, link: Link, call: Call) -> None:
        extra = 0.0
        if self.etcd_state == "no quorum":
            # Not answered; it may still be applied when the quorum is back (a proposal that
            # was pending), long after its caller gave up.
            self.stalled.append((node, inc, link, call))
            return
        if self.etcd_state == "down":
            answer: Any = Failed(Failure.UNAVAILABLE, "connection refused")
        elif self.now - self.leader_changed_at < 0.05 and self.rng.random() < 0.5:
            answer = Failed(Failure.UNAVAILABLE, "leader changed")
        else:
            if self.plan.auth and self.now - link.token_used > TOKEN_TTL:
                extra = 2 * node.delay(link, self.now)  # re-authenticated first: a round trip more
            answer = self.etcd.handle(self.now, call.request)
            if answer is True and isinstance(call.request, Confirm):
                self.confirmed[(call.request.key, call.request.token)] = self.now
        link.token_used = self.now
        back = node.down(link, self.now + extra)
        if back is not None:
            self.to_node(back, node, inc, self._answer, call.call_id, answer)

    def _answer(self, node: Node, call_id: int, answer: Any) -> None:
        if call_id not in node.pending:
            return  # answered already, or timed out
        node.pending.discard(call_id)
        prefix = node.reads.pop(call_id, None)
        if prefix is not None and isinstance(answer, Snapshot):
            entries = (candidate_of(prefix, entry) for entry in answer.entries)
            node.snapshots[prefix] = CandidateQueue(c for c in entries if c is not None)
        assert node.core is not None
        if self.trace is not None:
            self.trace(f"{self.now:9.4f} n{node.index} answer {call_id}: {answer}")
        self._apply(node, node.core.answer(node.local(self.now), call_id, answer))

    # -- watches ---------------------------------------------------------------------------------

    def _open_watch(self, node: Node, action: OpenWatch) -> None:
        if node.shared_view:
            queue = node.snapshots.get(action.prefix, CandidateQueue()).copy()
            node.queues[action.watch_id] = (action.prefix, queue)
        inc = node.incarnation
        arrive = node.up(node.observe, self.now)
        if arrive is None:
            self._break(node, inc, action.watch_id)
            return
        self.at(arrive, self._open_at_etcd, node, inc, action)

    def _open_at_etcd(self, node: Node, inc: int, action: OpenWatch) -> None:
        if not node.alive or node.incarnation != inc:
            return
        wid = action.watch_id
        link = node.observe
        if self.etcd_state == "down":
            self._stream(node, inc, wid, WatchEnded("connection refused"))
            return
        if self.now < self.watches_denied_until:
            self._stream(node, inc, wid, WatchEnded("permission denied"))
            return
        if self.plan.auth and self.now - link.token_used > TOKEN_TTL:
            link.token_used = self.now  # refused with the stale token; the client re-authenticates
            self._stream(node, inc, wid, WatchEnded("permission denied"))
            return
        link.token_used = self.now
        self._stream(node, inc, wid, WatchCreated())
        watch = self.etcd.watch(
            action.prefix, action.start_revision, lambda ch: self._stream(node, inc, wid, WatchEvents(ch))
        )
        if watch is None:
            self._stream(node, inc, wid, WatchEnded("compacted", self.etcd.compacted))
        elif wid in node.broken:
            self.etcd.cancel(watch)  # its stream broke while it was being created
        else:
            node.watches[wid] = watch

    def _stream(self, node: Node, inc: int, wid: int, message: WatchMessage) -> None:
        back = node.down(node.observe, self.now)
        if back is None:
            self._break(node, inc, wid)
        else:
            self.to_node(back, node, inc, self._watch_msg, wid, message)

    def _break(self, node: Node, inc: int, wid: int, after: float = DETECT) -> None:
        """The stream of watch *wid* broke: etcd forgets the watch, the client notices later.
        (Events still in flight on it are dropped by the core: they carry an ended watch's id.)"""
        if wid in node.broken or node.incarnation != inc:
            return
        node.broken.add(wid)
        watch = node.watches.pop(wid, None)
        if watch is not None:
            self.etcd.cancel(watch)
        self.to_node(self.now + after, node, inc, self._watch_msg, wid, WatchEnded("stream broken"))

    def _progress(self) -> None:
        """etcd answers the client's progress requests: all is delivered up to this revision."""
        if self.etcd_state == "up":
            for node in self.nodes:
                for wid in list(node.watches):
                    self._stream(node, node.incarnation, wid, WatchProgress(self.etcd.revision))
        self.at(self.now + PROGRESS_EVERY, self._progress)

    def _watch_msg(self, node: Node, wid: int, message: WatchMessage) -> None:
        assert node.core is not None
        if self.trace is not None:
            self.trace(f"{self.now:9.4f} n{node.index} watch {wid}: {message}")
        if isinstance(message, WatchEnded):
            node.broken.add(wid)
            watch = node.watches.pop(wid, None)
            if watch is not None:
                self.etcd.cancel(watch)
        followed = node.queues.get(wid)
        if followed is not None and isinstance(message, WatchEvents):
            # As the process's observer does: apply the changes once, send the whole queue.
            prefix, queue = followed
            for change in message.changes:
                candidate = None if change.entry is None else candidate_of(prefix, change.entry)
                if candidate is None:
                    queue.delete(change.key)
                else:
                    queue.put(candidate)
            message = WatchState(max(change.revision for change in message.changes), queue.copy())
        self._apply(node, node.core.watch(node.local(self.now), wid, message))

    # -- callbacks -------------------------------------------------------------------------------

    def _next_callback(self, node: Node) -> None:
        if not node.dispatch:
            node.dispatching = False
            return
        node.dispatching = True
        deliver = node.dispatch.popleft()
        took = self.rng.uniform(0, 0.002)
        for start, end in node.slow_callbacks:
            if start <= self.now < end:
                took = self.rng.uniform(self.plan.ttl, 2 * self.plan.ttl)
        self.to_node(self.now + took, node, node.incarnation, self._callback_done, deliver.seq)

    def _callback_done(self, node: Node, seq: int) -> None:
        assert node.core is not None
        self._apply(node, node.core.callback_done(node.local(self.now), seq))
        self._next_callback(node)

    def _companion_done(self, node: Node, seq: int) -> None:
        assert node.core is not None
        self._apply(node, node.core.callback_done(node.local(self.now), seq))

    # -- etcd's own clock --------------------------------------------------------------------------

    def _lessor(self) -> None:
        if self.etcd_state == "up":
            self.etcd.expire(self.now)
        self.at(self.now + EXPIRY_CHECK, self._lessor)

    def _etcd_outage(self, state: str, length: float) -> None:
        if self.etcd_state != "up":
            return
        self.etcd_state = state
        if state == "down":
            for node in self.nodes:  # every stream resets, and the clients see it at once
                for wid in list(node.watches):
                    self._break(node, node.incarnation, wid, after=DETECT / 10)
        self.at(self.now + length, self._etcd_back)

    def _etcd_back(self) -> None:
        self.etcd_state = "up"
        self.etcd.refresh_leases(self.now)  # a new raft leader extends every lease
        stalled, self.stalled = self.stalled, []
        for node, inc, link, call in stalled:
            if self.rng.random() < 0.5:  # some pending proposals apply after all
                self._at_etcd(node, inc, link, call)

    # -- faults ------------------------------------------------------------------------------------

    def leader_node(self) -> Node | None:
        for node in self.nodes:
            if node.core is not None and node.core.is_leader(node.local(self.now)):
                return node
        return None

    def _target(self, fault: Fault) -> Node:
        if fault.target < 0:
            leader = self.leader_node()
            if leader is not None:
                return leader
        return self.nodes[abs(fault.target) % len(self.nodes)]

    def inject(self, fault: Fault) -> None:
        node = self._target(fault)
        if self.trace is not None:
            self.trace(
                f"{self.now:9.4f} FAULT {fault.kind} on n{node.index} for {fault.duration:.3f} s ({fault.value})"
            )
        end = self.now + fault.duration
        kind = fault.kind
        if kind == "partition":
            node.cuts.append((self.now, end))
            if fault.duration > HOLD:
                for wid in list(node.watches):
                    self.at(self.now + DETECT, self._break_if_cut, node, node.incarnation, wid)
        elif kind == "pause":
            node.paused_until = max(node.paused_until, end)
        elif kind == "kill":
            self.kill(node)
            self.at(end, self._relaunch, node)
        elif kind == "stop":
            if node.alive and node.core is not None:
                self.to_node(self.now, node, node.incarnation, self._stop)
                self.at(end, self._relaunch_stopped, node, node.incarnation)
        elif kind == "close_session":
            if node.alive and node.core is not None:
                self.to_node(self.now, node, node.incarnation, self._close_session)
                self.at(end, self._relaunch_stopped, node, node.incarnation)
        elif kind == "stop_cut_off":
            # its key's delete is lost: on a shared session the session must try again
            node.cuts.append((self.now, end))
            if node.alive and node.core is not None:
                self.to_node(self.now, node, node.incarnation, self._stop)
                self.at(self.now + fault.duration * fault.value, self._relaunch_stopped, node, node.incarnation)
            end = max(end, self.now + fault.duration * fault.value)
        elif kind == "resign":
            if node.alive:
                self.to_node(self.now, node, node.incarnation, self._resign, fault.value)
            end = self.now + fault.value
        elif kind == "restart":
            self._etcd_outage("down", fault.duration)
        elif kind == "quorum_loss":
            self._etcd_outage("no quorum", fault.duration)
        elif kind == "leader_change":
            self.etcd.refresh_leases(self.now)
            self.leader_changed_at = self.now
            end = self.now
        elif kind == "compaction":
            self.etcd.compact()
            end = self.now
        elif kind == "delete_key":
            # Not the leader's: deleting it ends that term on the server at once, and the
            # leader learns it one watch delay later (fencing covers that; see docs/simulation.md).
            keys = [e.key for e in self.etcd.candidates(NAME + "/")][1:]
            if keys:
                self._operator_delete(keys[0] if fault.value else keys[abs(fault.target) % len(keys)])
            end = self.now
        elif kind == "delete_leader_key":
            self._delete_first()
            end = self.now
        elif kind == "revoke_lease":
            entries = self.etcd.candidates(NAME + "/")
            if entries:
                entry = entries[0] if fault.value else entries[abs(fault.target) % len(entries)]
                for kept in self.etcd.kv.values():  # its keys go with it: the same cut as a delete
                    if kept.lease_id == entry.lease_id:
                        self.operator_deleted[(kept.key, kept.create_revision)] = self.now
                self.etcd.handle(self.now, Revoke(entry.lease_id))
            end = self.now
        elif kind == "handoff_delete":
            first = self.etcd.candidates(NAME + "/")[:1]
            if node.alive and first:
                self._delete_after_handoff(first[0].key, fault.value)
                self.to_node(self.now, node, node.incarnation, self._resign, 0.0)
            end = self.now + 1.0
        elif kind == "slow_link":
            node.slow.append((self.now, end, fault.value))
        elif kind == "deny_watch":
            self.watches_denied_until = max(self.watches_denied_until, end)
            self.denials.append((self.now, end))
            for other in self.nodes:  # the streams open now are refused too
                for wid in list(other.watches):
                    self._break_if_cut(other, other.incarnation, wid)
        elif kind == "slow_callbacks":
            node.slow_callbacks.append((self.now, end))
            end += 2 * self.plan.ttl  # the last slow one may still run
        self.heal_time = max(self.heal_time, end)

    def _delete_after_handoff(self, leader_key: str, delay: float) -> None:
        """Once *leader_key* is deleted, delete the key then first in line *delay* s later."""

        def sink(changes: tuple[Change, ...]) -> None:
            if watch is not None and any(c.key == leader_key and c.entry is None for c in changes):
                self.etcd.cancel(watch)
                self.at(self.now + delay, self._delete_first)

        watch = self.etcd.watch(NAME + "/", self.etcd.revision + 1, sink)

    def _delete_first(self) -> None:
        first = self.etcd.candidates(NAME + "/")[:1]
        if first:
            self._operator_delete(first[0].key)

    def _operator_delete(self, key: str) -> None:
        entry = self.etcd.kv.get(key)
        if entry is not None:
            self.operator_deleted[(key, entry.create_revision)] = self.now
            self.etcd.delete(key)

    def _break_if_cut(self, node: Node, inc: int, wid: int) -> None:
        if wid in node.watches:
            self._break(node, inc, wid, after=0.0)

    def _relaunch(self, node: Node) -> None:
        if not node.alive:
            self.launch(node)

    def _relaunch_stopped(self, node: Node, inc: int) -> None:
        """Restart a node after a stop or a session close, as a supervisor would: once the
        stop has finished (its deletes and revokes may be waiting out their deadlines; a
        closing session, its revoke), never after everyone was asked to stop. On a shared
        session still open, a new elector joins it in the same process."""
        if self.stopping_all or node.incarnation != inc or not node.alive or node.core is None:
            return
        sharing = node.sharing
        if not node.core.finished or (sharing is not None and sharing.closing and not sharing.finished):
            self.at(self.now + 0.1, self._relaunch_stopped, node, inc)
        elif sharing is not None and not sharing.closing:
            self._reattach(node)
        else:
            node.alive = False
            self.launch(node)

    def _close_session(self, node: Node) -> None:
        """Session.close(): on a shared session every election stops, then the lease goes;
        an elector's own session closing is its stop."""
        assert node.core is not None
        if node.sharing is None:
            self._stop(node)
            return
        node.stop_asked = self.now
        self._apply(node, node.sharing.close(node.local(self.now)))

    def _reattach(self, node: Node) -> None:
        """A new elector of the election on the stopped one's shared session, in the same
        process: it may adopt the old key (once a delete of it in flight is answered)."""
        assert node.sharing is not None
        config = self.settings._replace(value=f"n{node.index}".encode())
        rng = random.Random(self.plan.seed * 31 + node.index * 1009 + node.incarnation + 7 * len(node.callbacks))
        node.core = ElectionCore(config, rng, self.mutations, session=node.sharing)
        self.cores.append(node.core)
        node.callbacks.append([])  # checked as a run of its own (C1, W1)
        node.finished_at.append(None)
        node.stop_asked = None
        self._apply(node, node.core.start(node.local(self.now)))

    def _stop(self, node: Node) -> None:
        assert node.core is not None
        node.stop_asked = self.now
        self._apply(node, node.core.stop(node.local(self.now)))

    def _resign(self, node: Node, cooldown: float) -> None:
        assert node.core is not None
        _, actions = node.core.resign(node.local(self.now), cooldown)
        self._apply(node, actions)

    # -- the whole run -------------------------------------------------------------------------------

    def simulate(self) -> None:
        plan = self.plan
        self.at(self.rng.uniform(0, EXPIRY_CHECK), self._lessor)
        self.at(self.rng.uniform(0, PROGRESS_EVERY), self._progress)
        if plan.noise_key:
            self.etcd.put(NAME + "/last-run", b"app data")
        for node in self.nodes:
            self.at(self.rng.uniform(0, 0.3), self.launch, node)
        for fault in plan.faults:
            self.at(fault.at, self.inject, fault)
        self.run(plan.duration)
        self.run(max(plan.duration, self.heal_time) + plan.settle)
        self.stop_time = self.now
        self.stopping_all = True
        for node in self.nodes:
            if node.alive and node.core is not None and not node.core.finished:
                self.to_node(self.now, node, node.incarnation, self._stop)
        self.run(self.now + plan.demote_timeout + 4 * plan.call_timeout + 4)
        for node in self.nodes:
            if node.alive:
                self._close_term(node)
