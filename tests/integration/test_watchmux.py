"""Many watches on one stream (leaderelect/_etcd/watchmux.py), against a real etcd."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pytest

from leaderelect._etcd import Endpoint, EtcdClient, Subscription, pb, prefix_end
from leaderelect.exceptions import EtcdError
from leaderelect.testing import EtcdServer, wait_until


def _client(server: EtcdServer) -> EtcdClient:
    host, port = server.endpoint.rsplit(":", 1)
    return EtcdClient([Endpoint(host, int(port))], call_timeout=2.0)


@pytest.fixture
def client(etcd: EtcdServer) -> Iterator[EtcdClient]:
    c = _client(etcd)
    yield c
    c.close()


def readers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "leaderelect-watch"}


def reader_threads() -> int:
    return len(readers())


class Drain:
    """Collects a subscription's responses on a thread, and how it ended."""

    def __init__(self, sub: Subscription) -> None:
        self.responses: queue.Queue[pb.WatchResponse] = queue.Queue()
        self.ended: list[BaseException | None] = []
        threading.Thread(target=self._run, args=(sub,), daemon=True).start()

    def _run(self, sub: Subscription) -> None:
        try:
            for response in sub:
                self.responses.put(response)
            self.ended.append(None)
        except BaseException as err:
            self.ended.append(err)

    def keys(self, count: int, timeout: float = 5.0) -> list[bytes]:
        got: list[bytes] = []
        while len(got) < count:
            response = self.responses.get(timeout=timeout)
            got += [e.kv.key for e in response.events]
        return got


def watch(client: EtcdClient, pfx: bytes, start: int = 0, probe: float = 5.0) -> Subscription:
    return client.watch(pfx, prefix_end(pfx), start, probe_interval=probe)


def test_watches_share_one_stream_and_get_only_their_events(client: EtcdClient, name: str) -> None:
    before = reader_threads()
    a, b = watch(client, f"{name}/a/".encode()), watch(client, f"{name}/b/".encode())
    da, db = Drain(a), Drain(b)
    assert reader_threads() == before + 1  # one stream, one reader
    assert da.responses.get(timeout=5).created and db.responses.get(timeout=5).created
    client.put(f"{name}/a/1".encode(), b"x")
    client.put(f"{name}/b/1".encode(), b"y")
    client.put(f"{name}/a/2".encode(), b"z")
    assert da.keys(2) == [f"{name}/a/1".encode(), f"{name}/a/2".encode()]
    assert db.keys(1) == [f"{name}/b/1".encode()]
    a.cancel()
    client.put(f"{name}/b/2".encode(), b"y")
    assert db.keys(1) == [f"{name}/b/2".encode()]
    assert wait_until(lambda: da.ended == [None], 2)  # cancelled: ends quietly
    b.cancel()
    assert wait_until(lambda: reader_threads() == before, 5)  # the last one closes the stream


def test_progress_answers_reach_every_watch(client: EtcdClient, name: str) -> None:
    a, b = watch(client, f"{name}/a/".encode(), probe=0.2), watch(client, f"{name}/b/".encode(), probe=0.2)
    da, db = Drain(a), Drain(b)
    try:
        for drain in (da, db):
            seen = [drain.responses.get(timeout=5) for _ in range(3)]  # created, then progress
            assert seen[0].created and not any(r.events for r in seen)
            assert all(r.watch_id == -1 for r in seen[1:])
    finally:
        a.cancel()
        b.cancel()


def test_a_watch_cancelled_before_it_was_created_is_cancelled_on_the_server(client: EtcdClient, name: str) -> None:
    keep = watch(client, f"{name}/keep/".encode())
    gone = watch(client, f"{name}/gone/".encode())
    gone.cancel()  # most likely still in flight
    dk = Drain(keep)
    client.put(f"{name}/gone/1".encode(), b"x")
    client.put(f"{name}/keep/1".encode(), b"x")
    assert dk.keys(1) == [f"{name}/keep/1".encode()]
    assert list(gone) == []
    keep.cancel()


def test_a_failed_stream_ends_every_watch_with_an_error_and_a_new_one_follows(fresh_etcd: EtcdServer) -> None:
    client = _client(fresh_etcd)
    try:
        a, b = watch(client, b"a/"), watch(client, b"b/")
        da, db = Drain(a), Drain(b)
        assert da.responses.get(timeout=5).created and db.responses.get(timeout=5).created
        fresh_etcd.kill()
        assert wait_until(lambda: len(da.ended) == 1 and len(db.ended) == 1, 10)
        assert isinstance(da.ended[0], EtcdError) and isinstance(db.ended[0], EtcdError)
        fresh_etcd.restart()
        assert wait_until(lambda: _watch_works(client), 20)
    finally:
        client.close()


def _watch_works(client: EtcdClient) -> bool:
    try:
        sub = watch(client, b"c/")
    except EtcdError:
        return False
    drain = Drain(sub)
    try:
        client.put(b"c/1", b"x")
        return drain.keys(1, timeout=2) == [b"c/1"]
    except (EtcdError, queue.Empty):
        return False
    finally:
        sub.cancel()


def test_the_reader_thread_is_gone_when_the_last_cancel_returns(etcd: EtcdServer, name: str) -> None:
    """stop() returns with nothing running: the chaos checker found an elector's stop() return
    while the stream's reader thread was still winding down (C2: 'leaderelect-watch' left).
    The last cancel ends the stream; it now returns only once the reader has."""
    for i in range(20):
        client = _client(etcd)
        try:
            before = readers()
            sub = watch(client, f"{name}/{i}/".encode())
            assert sub.next_response(5) is not None  # created: the reader is running
            sub.cancel()
            assert readers() - before == set(), f"round {i}: the reader outlived the last cancel"
        finally:
            client.close()


def test_closing_the_client_ends_its_stream_and_reader(etcd: EtcdServer, name: str) -> None:
    for i in range(20):
        client = _client(etcd)
        before = readers()
        sub = watch(client, f"{name}/{i}/".encode())
        assert sub.next_response(5) is not None
        client.close()
        assert readers() - before == set(), f"round {i}: the reader outlived close()"
        with pytest.raises(EtcdError):
            sub.next_response(5)


def test_a_watch_added_while_the_last_one_is_cancelled_keeps_the_stream(client: EtcdClient, name: str) -> None:
    """cancel() decided under the lock that the stream was idle and ended it after letting the
    lock go: a watch added in between was failed at once ("watch stream closed"), which cost
    an observer a resync (and its view a flip to unknown)."""
    a = watch(client, f"{name}/a/".encode())
    da = Drain(a)
    assert da.responses.get(timeout=5).created
    added: list[Subscription] = []
    put = a._put

    def put_then_add(item: object) -> None:
        # runs inside cancel(), after the lock is let go and before the stream is ended
        put(item)  # type: ignore[arg-type]
        if item is None and not added:
            added.append(watch(client, f"{name}/b/".encode()))

    a._put = put_then_add  # type: ignore[method-assign]
    a.cancel()
    assert len(added) == 1
    db = Drain(added[0])
    assert db.responses.get(timeout=5).created, db.ended
    client.put(f"{name}/b/1".encode(), b"x")
    assert db.keys(1) == [f"{name}/b/1".encode()]
    assert db.ended == []
    added[0].cancel()
    assert wait_until(lambda: db.ended == [None], 5)
