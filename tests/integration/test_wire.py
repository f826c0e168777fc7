"""Our own message definitions and client against a real etcd: each call round-trips.

`make proto-range` also runs this file on the oldest supported protobuf/grpcio pair.
"""

from __future__ import annotations

import pytest

from leaderelect._etcd import Endpoint, EtcdClient, pb, prefix_end
from leaderelect.exceptions import EtcdError, EtcdUnavailableError, LeaseExpiredError
from leaderelect.testing import EtcdServer


@pytest.fixture
def client(etcd: EtcdServer) -> EtcdClient:
    host, port = etcd.endpoint.rsplit(":", 1)
    return EtcdClient([Endpoint(host, int(port))], call_timeout=2.0)


def test_put_range_delete(client: EtcdClient, name: str) -> None:
    key = f"{name}/k".encode()
    put = client.put(key, b"v1")
    got = client.range(key)
    assert got.kvs[0].value == b"v1"
    assert got.kvs[0].create_revision == put.header.revision
    assert client.delete(key).deleted == 1
    assert not client.range(key).kvs


def test_txn_compare_create_revision(client: EtcdClient, name: str) -> None:
    key = f"{name}/t".encode()
    absent = pb.Compare(key=key, target=pb.Compare.CREATE, result=pb.Compare.EQUAL, create_revision=0)
    put = pb.RequestOp(request_put=pb.PutRequest(key=key, value=b"a"))
    first = client.txn([absent], [put])
    second = client.txn([absent], [put], [pb.RequestOp(request_range=pb.RangeRequest(key=key))])
    assert first.succeeded and not second.succeeded
    assert second.responses[0].response_range.kvs[0].create_revision == first.header.revision


def test_lease_ttl_is_raised_to_the_minimum_and_keepalive_renews(client: EtcdClient) -> None:
    lease_id, granted = client.lease_grant(1)
    assert granted >= 2  # etcd raises a 1 s request to its minimum (docs/facts.md)
    assert client.lease_keepalive(lease_id) == granted
    assert 0 < client.lease_time_to_live(lease_id) <= granted
    client.lease_revoke(lease_id)
    assert client.lease_keepalive(lease_id) == 0  # an expired lease answers TTL 0, not an error
    with pytest.raises(LeaseExpiredError):
        client.lease_revoke(lease_id)


def test_sorted_range_with_max_create_revision(client: EtcdClient, name: str) -> None:
    pfx = f"{name}/q/".encode()
    revs = [client.put(pfx + bytes([ord("a") + i]), b"x").header.revision for i in range(3)]
    response = client.range(
        pfx,
        prefix_end(pfx),
        limit=1,
        sort_target=pb.RangeRequest.CREATE,
        sort_order=pb.RangeRequest.DESCEND,
        max_create_revision=revs[2] - 1,
    )
    assert response.kvs[0].create_revision == revs[1]


def test_watch_sees_put_and_delete_in_order(client: EtcdClient, name: str) -> None:
    pfx = f"{name}/w/".encode()
    start = client.put(pfx + b"first", b"1").header.revision
    client.delete(pfx + b"first")
    watch = client.watch(pfx, prefix_end(pfx), start, probe_interval=1.0)
    events: list[tuple[int, bytes]] = []
    try:
        for response in watch:
            events += [(e.type, e.kv.key) for e in response.events]
            if len(events) >= 2:
                break
    finally:
        watch.cancel()
    assert events == [(pb.Event.PUT, pfx + b"first"), (pb.Event.DELETE, pfx + b"first")]


def test_idle_watch_answers_progress_probes(client: EtcdClient, name: str) -> None:
    pfx = f"{name}/idle/".encode()
    watch = client.watch(pfx, prefix_end(pfx), 0, probe_interval=0.2)
    seen = 0
    try:
        for response in watch:
            assert not response.events
            seen += 1
            if seen >= 4:  # created + three progress answers: the probe keeps it alive
                break
    finally:
        watch.cancel()


def test_unreachable_endpoint_fails_within_the_deadline() -> None:
    client = EtcdClient([Endpoint("127.0.0.1", 1)], call_timeout=0.5)
    with pytest.raises(EtcdUnavailableError):
        client.range(b"x")
    client.close()


def test_call_on_a_channel_closed_by_another_thread_is_retryable(client: EtcdClient) -> None:
    # grpcio raises ValueError on a closed channel; it must be a retryable etcd error, and
    # the next call must use a new channel (found by the chaos harness: a dead observer).
    client.range(b"x")
    client.current().channel.close()
    with pytest.raises(EtcdUnavailableError):
        client.range(b"x")
    client.range(b"x")
    client.current().channel.close()
    with pytest.raises(EtcdUnavailableError):
        client.watch(b"x", b"y", 0, probe_interval=1.0)
    client.range(b"x")


def test_a_deadline_the_caller_cut_short_does_not_leave_a_healthy_endpoint(etcd: EtcdServer) -> None:
    """A call made with the lease's last milliseconds ran out of time and the client left a
    healthy member for it, resyncing every observer on that connection."""
    from leaderelect.testing import FaultProxy

    with FaultProxy(etcd.endpoint) as proxy:
        host, port = proxy.endpoint.rsplit(":", 1)
        client = EtcdClient([Endpoint(host, int(port))], call_timeout=2.0)
        try:
            client.range(b"k")  # connected
            left: list[Endpoint] = []
            client.failover_hooks.append(left.append)
            proxy.set_mode("pass", latency=0.2)  # a healthy but distant member
            with pytest.raises(EtcdUnavailableError, match="DEADLINE_EXCEEDED"):
                client.range(b"k", timeout=0.05)
            with pytest.raises(EtcdError):
                client.lease_keepalive(1, timeout=0.05)
            assert (client.reconnects, left) == (0, [])
        finally:
            client.close()


def test_a_renewal_that_runs_out_of_its_budget_moves_to_the_next_member(etcd: EtcdServer) -> None:
    """A renewal's own budget (Session: at most a renewal interval) running out does blame
    the member: the retry must reach another one while the lease still has time."""
    from leaderelect.testing import FaultProxy

    with FaultProxy(etcd.endpoint) as slow, FaultProxy(etcd.endpoint) as fast:
        hosts = [p.endpoint.rsplit(":", 1) for p in (slow, fast)]
        client = EtcdClient([Endpoint(host, int(port)) for host, port in hosts], call_timeout=2.0)
        try:
            lease_id, ttl = client.lease_grant(5)
            slow.set_mode("pass", latency=0.3)
            with pytest.raises(EtcdError):
                client.lease_keepalive(lease_id, timeout=0.05, budget=True)
            assert client.reconnects == 1 and client.current_endpoint.port == int(fast.endpoint.rsplit(":", 1)[1])
            assert client.lease_keepalive(lease_id, timeout=0.5, budget=True) == ttl
        finally:
            client.close()
