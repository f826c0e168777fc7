"""The properties every simulated schedule must keep (the chaos checker's, in simulation).

* S1 one leader: no two terms' leadership overlaps at any true instant. A term lasts from
  when its core took it until it ended it, or until its lease's local deadline passed on its
  own clock, whichever is first (``is_leader`` reads False from that instant). One cut: a
  key that etcd confirmed to its candidate and that someone else deleted afterwards ends
  that term on the server at the deletion (fenced writes fail from that revision; the
  leader learns it one watch delivery later, see ``operator_lag``). A term whose key was
  so deleted before the confirmation's answer arrived is over before it began, and is left
  out of S1 and S2.
* S2 tokens grow: each term's token is higher than every earlier term's.
* C1 callbacks pair: as each core hands them to its dispatcher, ``on_elected`` and
  ``on_demoted`` alternate, start with ``on_elected``, carry the same token, and a core that
  finished handed over ``on_demoted`` last. (Whether the dispatcher ran them all is the
  process's fate: a kill right after stop() may cut a slow callback queue short.)
* L1 liveness: from ``heal + bound`` until everyone is asked to stop, some candidate leads at
  every instant (bound: two TTLs, two call deadlines and 3 s of backoff and expiry lag).
* W1 stop: every stop finishes within ``demote_timeout + 4 * call_timeout + 2`` s, and then no
  candidate key is left in etcd.
* K1 no spin: each process opens at most 10 + 2 per simulated second watches.
* K2 key deleted: a leader whose key someone else deleted stops leading within ttl + 2 s
  (one watch delivery when its links work; its lease deadline when they do not), counted
  from when etcd stopped refusing watches if it was refusing them (a leader learns of the
  deletion only through its watch).
* W2 finished means finished: no request is sent after ``Finished``.
* S3 no blind term: a term never begins while the candidate's own view shows its key gone.
"""

from __future__ import annotations

from leaderelect.sim.world import TermRecord, World


def liveness_bound(world: World) -> float:
    plan = world.plan
    return 2 * plan.ttl + 2 * plan.call_timeout + 3


def term_end(world: World, record: TermRecord) -> tuple[float, bool]:
    """When *record*'s leadership ended for the one-leader check (see S1), and whether an
    operator's deletion of its confirmed key cut it."""
    end = record.end if record.end is not None else world.now
    deleted = world.operator_deleted.get((record.key, record.token))
    confirmed = world.confirmed.get((record.key, record.token))
    if deleted is not None and confirmed is not None and confirmed <= deleted and deleted < end:
        return max(deleted, record.start), True
    return end, False


def operator_lag(world: World) -> float:
    """The longest time a leader kept leading after someone else deleted its key."""
    lags = [(r.end or world.now) - term_end(world, r)[0] for r in world.terms]
    return max(lags, default=0.0)


def violations(world: World) -> list[str]:
    plan = world.plan
    found: list[str] = []
    terms = sorted(world.terms, key=lambda r: (r.start, r.token))
    # S1 and S2
    latest_end, latest = -1.0, None
    highest = 0
    for record in terms:
        end, cut = term_end(world, record)
        if end <= record.start:
            if cut:
                # stillborn: confirmed, then deleted by an operator before the answer came
                # back; over on the server before it began (fenced writes fail from there)
                continue
        elif latest is not None and record.start < latest_end - 1e-9:
            found.append(
                f"S1 two leaders: node {latest.node} (token {latest.token}) until {latest_end:.4f}, "
                f"node {record.node} (token {record.token}) from {record.start:.4f}"
            )
        if record.token <= highest:
            found.append(f"S2 token {record.token} of node {record.node} at {record.start:.4f} is not above {highest}")
        highest = max(highest, record.token)
        if end > latest_end:
            latest_end, latest = end, record
    # C1
    for node in world.nodes:
        for incarnation, calls in enumerate(node.callbacks, 1):
            expect, token = "elected", None
            for kind, tok in calls:
                if kind != expect or (kind == "demoted" and tok != token):
                    found.append(f"C1 node {node.index}/{incarnation}: {kind} {tok} after {calls[:10]}")
                    break
                expect, token = ("demoted", tok) if kind == "elected" else ("elected", None)
            finished = node.finished_at[incarnation - 1] is not None
            if finished and calls and calls[-1][0] != "demoted":
                found.append(f"C1 node {node.index}/{incarnation} finished without on_demoted")
    # L1: a leader at every instant in [heal + bound, stop time]
    start = max(plan.duration, world.heal_time) + liveness_bound(world)
    if start < world.stop_time:
        covered = start
        for record in terms:
            end = record.end if record.end is not None else world.now
            if record.start <= covered + 1e-9 and end > covered:
                covered = end
        if covered < world.stop_time - 1e-9:
            found.append(
                f"L1 no leader at {covered:.3f} (faults healed at {world.heal_time:.3f}, bound from {start:.3f})"
            )
    # W1
    bound = plan.demote_timeout + 4 * plan.call_timeout + 2
    for node in world.nodes:
        if node.alive and node.stop_asked is not None:
            done = node.finished_at[-1]
            if done is None or (done - node.stop_asked) * node.rate > bound + 1e-6:
                found.append(f"W1 node {node.index} asked to stop at {node.stop_asked:.3f}, finished {done}")
    left = world.etcd.candidates("sim/")
    if left and not found:
        found.append(f"W1 keys left after every stop: {[e.key for e in left]}")
    # K2
    for record in world.terms:
        deleted = world.operator_deleted.get((record.key, record.token))
        end = record.end if record.end is not None else world.now
        if deleted is None or deleted >= end:
            continue
        since = max(deleted, record.start)
        # No watch could tell it before the refusals ended; after them the observer reconnects
        # within its backoff (jittered, capped at 2 s), so refusals that begin again within
        # that cap keep it blind (seed 25179: two refusals 0.54 s apart).
        for start, stop in sorted(world.denials):
            if start <= since + 2.0 and stop > since:
                since = stop
        if end - since > plan.ttl + 2:
            found.append(f"K2 node {record.node} led {end - deleted:.3f} s after its key was deleted")
    # S3
    found.extend(f"S3 {line}" for line in world.blind_terms[:3])
    # W2
    found.extend(f"W2 {line}" for line in world.after_finish[:3])
    # K1
    seconds = world.now
    for node in world.nodes:
        opened = node.core.follower.watches_opened if node.core is not None else 0
        if opened > 10 + 2 * seconds:
            found.append(f"K1 node {node.index} opened {opened} watches in {seconds:.0f} s")
    return found
