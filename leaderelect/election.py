"""The etcd election steps, in etcd's own layout; no threads of their own.

A candidate's key is ``<name>/<lease id in hex>``, bound to its lease and written by a
put-if-absent transaction; candidates queue by create revision and the lowest leads —
exactly what etcd's Go ``concurrency.Election`` and ``etcdctl elect`` do, so Python and Go
candidates share one election. The create revision of the leader's key is the term's
fencing token: etcd revisions only grow, so tokens do too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from leaderelect._etcd import EtcdClient, pb, prefix_end
from leaderelect.core.queue import Candidate as Candidate  # re-exported: its home before the core
from leaderelect.core.queue import is_candidate_key
from leaderelect.exceptions import EtcdUnavailableError

_CREATE = pb.RangeRequest.CREATE


#: what the leader looks like to an observer
Leader = Candidate


def prefix(name: str) -> bytes:
    """The key prefix of election *name*: ``<name>/``."""
    return name.encode() + b"/"


def candidate_key(name: str, lease_id: int) -> bytes:
    """The candidate key of *lease_id* in election *name*: ``<name>/<lease id in hex>``."""
    return prefix(name) + format(lease_id, "x").encode()


def is_candidate(pfx: bytes, kv: pb.KeyValue) -> bool:
    """Whether *kv* is a candidate of the election with prefix *pfx*: exactly
    ``<name>/<its own lease id in lowercase hex>``, on a lease.

    Anything else under the prefix is not: a key the application keeps there (a leaseless
    ``jobs/last-run`` would lead forever and block every successor), or a candidate of a
    nested election (``jobs/eu/<lease>``). Go's ``concurrency.Election`` writes exactly
    this shape, so its candidates still count.
    """
    return is_candidate_key(pfx.decode("utf-8", "replace"), kv.key.decode("utf-8", "replace"), kv.lease)


def _put(key: bytes, value: bytes, lease: int) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, lease=lease))


def _created_at(key: bytes, revision: int) -> pb.Compare:
    return pb.Compare(key=key, target=pb.Compare.CREATE, result=pb.Compare.EQUAL, create_revision=revision)


def campaign(client: EtcdClient, name: str, lease_id: int, value: bytes, *, timeout: float | None = None) -> int:
    """Join the queue; returns the key's create revision.

    Idempotent: if an earlier attempt's write landed but its answer was lost, the key
    (bound to the same lease, so ours) is adopted and its value corrected. A key that is
    never adopted dies with its lease, so a half-done campaign cannot make this process
    leader behind its back.
    """
    key = candidate_key(name, lease_id)
    response = client.txn(
        compare=[_created_at(key, 0)],
        success=[_put(key, value, lease_id)],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
        timeout=timeout,
    )
    if response.succeeded:
        return response.header.revision
    kvs = response.responses[0].response_range.kvs
    if not kvs:  # deleted between compare and read: impossible in one txn, but be exact
        raise EtcdUnavailableError(f"campaign key {key!r} vanished; retrying")
    kv = kvs[0]
    if kv.value != value or kv.lease != lease_id:
        proclaim(client, key, kv.create_revision, value, lease_id, timeout=timeout)
    return kv.create_revision


def confirm(client: EtcdClient, key: bytes, token: int, lease_id: int, *, timeout: float | None = None) -> bool:
    """True if *key* still exists with create revision *token* on lease *lease_id*.

    A key bound to a lease exists only while the lease lives, so this linearizable read
    proves both; etcd's own Campaign skips it (etcd issues #11051, #19597).
    """
    kvs = client.range(key, timeout=timeout).kvs
    return bool(kvs) and kvs[0].create_revision == token and kvs[0].lease == lease_id


def proclaim(
    client: EtcdClient, key: bytes, token: int, value: bytes, lease_id: int, *, timeout: float | None = None
) -> bool:
    """Set the leader's value, only if the key is still the one of this term."""
    response = client.txn(compare=[_created_at(key, token)], success=[_put(key, value, lease_id)], timeout=timeout)
    return response.succeeded


def resign(client: EtcdClient, key: bytes, token: int, *, timeout: float | None = None) -> bool:
    """Delete the key of this term (never a successor's)."""
    op = pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key))
    return client.txn(compare=[_created_at(key, token)], success=[op], timeout=timeout).succeeded


def withdraw(client: EtcdClient, key: bytes, token: int | None, *, timeout: float | None = None) -> None:
    """Delete a candidate's own *key*: only the one created at revision *token* when known
    (a later elector on the same lease may have made it anew), else whatever is there."""
    if token is None:
        client.delete(key, timeout=timeout)
    else:
        resign(client, key, token, timeout=timeout)


def fenced_txn(
    client: EtcdClient,
    key: bytes,
    token: int,
    puts: Mapping[bytes, bytes],
    deletes: Iterable[bytes],
    *,
    timeout: float | None = None,
) -> bool:
    """Apply *puts* and *deletes* atomically, only while *key* has create revision *token*."""
    ops = [_put(k, v, 0) for k, v in puts.items()]
    ops += [pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=k)) for k in deletes]
    return client.txn(compare=[_created_at(key, token)], success=ops, timeout=timeout).succeeded


def participants(client: EtcdClient, name: str, *, timeout: float | None = None) -> tuple[list[Candidate], int]:
    """Every candidate in queue order (the leader first), and the revision read at.

    Only keys of candidates count (see :func:`is_candidate`); other keys under the prefix
    are left alone.
    """
    pfx = prefix(name)
    response = client.range(
        pfx, prefix_end(pfx), sort_target=_CREATE, sort_order=pb.RangeRequest.ASCEND, timeout=timeout
    )
    return [Candidate.from_kv(kv) for kv in response.kvs if is_candidate(pfx, kv)], response.header.revision


def leader(client: EtcdClient, name: str, *, timeout: float | None = None) -> Candidate | None:
    """The current leader (the candidate with the lowest create revision), or None."""
    pfx = prefix(name)
    # The first few keys by create revision almost always hold it; other keys under the
    # prefix only push it back, so read everything only when the first page has none.
    response = client.range(
        pfx, prefix_end(pfx), limit=16, sort_target=_CREATE, sort_order=pb.RangeRequest.ASCEND, timeout=timeout
    )
    first = next((kv for kv in response.kvs if is_candidate(pfx, kv)), None)
    if first is not None:
        return Candidate.from_kv(first)
    if not response.more:
        return None
    candidates, _ = participants(client, name, timeout=timeout)
    return candidates[0] if candidates else None
