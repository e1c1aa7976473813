"""The entity cache on its own: codec, both backends' contract, single flight, stale, breaker."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from api.connections import Connections
from sources.cache.backends import (
    CacheBackend,
    CacheUnavailableError,
    Entry,
    MemoryBackend,
    Put,
    RedisBackend,
)
from sources.cache.cluster import redis_backend
from sources.cache.codec import CodecError, decode, encode, key_text, owner_of, shape_version
from sources.cache.entity import CachePolicy, EntityCache, Stale
from sources.cache.responses import ResponseCache
from sources.dataloader import DataLoader
from sources.errors import SourceUnavailableError
from sources.net import free_port
from sources.paging import PageKey, Position
from sources.redis_slots import hash_tag
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer
from tests.conftest import REDIS_KINDS, redis_url_of
from tests.services import own_redis, wait_for_redis
from tests.waits import until

POLICY = CachePolicy(
    ttls={"sql": 60, "mongo": 60, "loyalty": 60, "tracking": 60},
    negative_ttl=5,
    stale_grace=60,
    hold=1,
)


async def test_codec_round_trips_every_record_of_the_agent_view(
    connections: Connections, vendor_store: VendorStore
) -> None:
    from api.context import create_loaders

    cid = await build_customer(connections, vendor_store, orders=2)
    loaders = create_loaders(connections)
    page = await loaders.sql.order_page_by_customer.load(PageKey(owner=cid, first=5))
    assert page is not None and page.items
    values: list[Any] = [
        await loaders.sql.customer_by_id.load(cid),
        await loaders.sql.addresses_by_customer_id.load(cid),
        page,
        await loaders.sql.lines_by_order_id.load(page.items[0].id),
        await loaders.sql.product_by_sku.load("SKU-00001"),
        await loaders.mongo.profile_by_customer_id.load(cid),
        await loaders.mongo.tickets_by_customer.load((cid, None)),
        await loaders.mongo.timeline_page_by_customer.load(PageKey(owner=cid, first=3)),
        await loaders.vendor.loyalty_by_customer_id.load(cid),
        await loaders.vendor.shipment_by_tracking_number.load(page.items[0].tracking_number or ""),
        None,
        [],
    ]
    for value in values:
        assert decode(encode(value)) == value


def test_codec_builds_only_registered_types() -> None:
    with pytest.raises(CodecError):
        decode(b'{"~": "os.system", "v": ["echo owned"]}')
    with pytest.raises(CodecError):
        encode(object())


def test_key_prefix_carries_the_shape_of_the_records() -> None:
    cache = EntityCache(MemoryBackend(10), POLICY, namespace="ns")
    assert cache.key("sql", "customer", 7) == f"ns:{shape_version()}:sql:customer:7"


@pytest.fixture(params=["memory", *REDIS_KINDS])
async def backend(
    request: pytest.FixtureRequest, redis_namespace: str
) -> AsyncIterator[CacheBackend]:
    if request.param == "memory":
        yield MemoryBackend(max_entries=1000)
        return
    on_redis = redis_backend(redis_url_of(request, request.param), timeout=0.5, breaker_seconds=1)
    yield on_redis
    await on_redis.close()


def entry(value: Any) -> Entry:
    return Entry(value, 1.0, 2.0)


async def test_backend_put_get_and_expiry(backend: CacheBackend, redis_namespace: str) -> None:
    a, b = f"{redis_namespace}:a", f"{redis_namespace}:b"
    # b lasts long enough for a busy machine's round trips to read it back before it expires.
    await backend.put_many([Put(a, entry({"x": "1"}), 60), Put(b, entry(None), 1)])
    assert await backend.get_many([a, b, f"{redis_namespace}:c"]) == [
        entry({"x": "1"}),
        entry(None),
        None,
    ]

    async def expired() -> bool:
        return await backend.get_many([b]) == [None]

    await until(expired, "b to expire", 10)
    assert await backend.get_many([a]) == [entry({"x": "1"})]


async def test_invalidation_tombstones_keys_and_tags(
    backend: CacheBackend, redis_namespace: str
) -> None:
    ns = redis_namespace
    # Named as EntityCache names them: a page beside its owner's tag (one slot on a cluster).
    seven, eight = hash_tag("7"), hash_tag("8")
    tag = f"{ns}:tag:{seven}"
    await backend.put_many(
        [
            Put(f"{ns}:k", entry(1), 60),
            Put(f"{ns}:{seven}page1", entry(2), 60, tag=tag),
            Put(f"{ns}:{seven}page2", entry(3), 60, tag=tag),
            Put(f"{ns}:{eight}other", entry(4), 60, tag=f"{ns}:tag:{eight}"),
        ]
    )
    await backend.invalidate([f"{ns}:k"], [tag], hold=HOLD)
    keys = [f"{ns}:k", f"{ns}:{seven}page1", f"{ns}:{seven}page2", f"{ns}:{eight}other"]
    assert await backend.get_many(keys) == [None, None, None, entry(4)]
    # A late write-back of a read that began before the write is refused while held...
    await backend.put_many([Put(f"{ns}:k", entry("old"), 60)])
    assert await backend.get_many([f"{ns}:k"]) == [None]
    # ...and accepted once the hold is over.
    await _accepted_once_the_hold_is_over(backend, Put(f"{ns}:k", entry("new"), 60))


# Long enough that a busy machine's round trips between an invalidation and the write-back it
# must refuse stay within it; the write-back after it is waited for, not timed.
HOLD = 1.0


async def _accepted_once_the_hold_is_over(backend: CacheBackend, put: Put) -> None:
    async def accepted() -> bool:
        await backend.put_many([put])
        return await backend.get_many([put.key]) == [put.entry]

    await until(accepted, "the write-back once the hold is over", 10 * HOLD)


async def test_a_page_read_before_its_owner_was_invalidated_is_not_put_back(
    backend: CacheBackend, redis_namespace: str
) -> None:
    # The page was not cached when its owner's pages were invalidated, so no tombstone of
    # its own stops the late write-back: the owner tag's tombstone does.
    ns = redis_namespace
    tag, page = f"{ns}:tag:{hash_tag('9')}", f"{ns}:{hash_tag('9')}page"
    await backend.invalidate([], [tag], hold=HOLD)
    await backend.put_many([Put(page, entry("old"), 60, tag=tag)])
    assert await backend.get_many([page]) == [None]
    await _accepted_once_the_hold_is_over(backend, Put(page, entry("new"), 60, tag=tag))


async def test_a_blob_read_before_one_of_its_tags_was_invalidated_is_not_put_back(
    backend: CacheBackend, redis_namespace: str
) -> None:
    ns = redis_namespace
    key, tags = f"{ns}:answer", [f"{ns}:customer:1#r", f"{ns}:profile:1#r"]
    missed, read_at = await backend.get_blob(key)
    assert missed is None
    assert await backend.put_blob(key, b'{"data":1}', 60, tags, read_at, 5)
    assert (await backend.get_blob(key))[0] == b'{"data":1}'

    # A read begins, a write invalidates one of the tags, the read puts its (old) answer.
    _, racing = await backend.get_blob(key)
    await backend.invalidate([], tags[1:], hold=5)
    assert (await backend.get_blob(key))[0] is None  # invalidated with the tag
    assert not await backend.put_blob(key, b'{"data":"old"}', 60, tags, racing, 5)
    assert (await backend.get_blob(key))[0] is None

    # A read that begins after the write keeps its answer at once, within the hold.
    _, after = await backend.get_blob(key)
    assert await backend.put_blob(key, b'{"data":"new"}', 60, tags, after, 5)
    assert (await backend.get_blob(key))[0] == b'{"data":"new"}'

    # And the tags' sets hold it: invalidating the other tag reaches it too.
    await backend.invalidate([], tags[:1], hold=5)
    assert (await backend.get_blob(key))[0] is None

    # A read older than the tombstones last (`within`) is not put back: they cannot tell.
    _, long_ago = await backend.get_blob(key)
    await asyncio.sleep(0.3)
    assert not await backend.put_blob(key, b'{"data":"slow"}', 60, tags, long_ago, 0.2)


async def test_the_memory_backend_unfiles_what_it_evicts_or_files_again() -> None:
    memory = MemoryBackend(max_entries=2)
    for n in range(5):
        assert await memory.put_blob(f"a{n}", b"{}", 60, ["t#r", f"t{n}#r"], 0.0, 1e9)
    assert memory._tags == {"t#r": {"a3", "a4"}, "t3#r": {"a3"}, "t4#r": {"a4"}}
    assert await memory.put_blob("a4", b"{}", 60, ["u#r"], 0.0, 1e9)
    assert memory._tags == {"t#r": {"a3"}, "t3#r": {"a3"}, "u#r": {"a4"}}


def test_a_key_named_by_a_client_cannot_name_a_tag() -> None:
    # The response cache's tags and tombstones end in `#r` and `#gone`.
    assert "#" not in key_text("ABC#r") and key_text("ABC#r") != key_text("ABC%23r")
    assert "#" not in key_text(("7", "x#gone")) and "#" not in owner_of("9#r")


async def test_memory_backend_evicts_least_recently_used() -> None:
    memory = MemoryBackend(max_entries=2)
    await memory.put_many([Put("a", entry(1), 60), Put("b", entry(2), 60)])
    await memory.get_many(["a"])
    await memory.put_many([Put("c", entry(3), 60)])
    assert await memory.get_many(["a", "b", "c"]) == [entry(1), None, entry(3)]


class CountingSource:
    """A stand-in *source function* (not a store): counts batches, can fail, can be slow."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.failing = False
        self.delay = 0.0

    async def __call__(self, keys: Sequence[int]) -> list[Any]:
        self.batches.append(list(keys))
        await asyncio.sleep(self.delay)
        if self.failing:
            raise SourceUnavailableError("sql", "down")
        return [None if k < 0 else {"id": str(k)} for k in keys]


async def test_concurrent_misses_share_one_source_call() -> None:
    source = CountingSource()
    source.delay = 0.05
    cache = EntityCache(MemoryBackend(100), POLICY)
    load = cache.read_through("sql", "thing", source)
    first, second = await asyncio.gather(load([1, 2]), load([2, 3]))
    assert first == [{"id": "1"}, {"id": "2"}] and second == [{"id": "2"}, {"id": "3"}]
    assert sorted(k for batch in source.batches for k in batch) == [1, 2, 3]
    assert await load([1, 2, 3]) == [{"id": "1"}, {"id": "2"}, {"id": "3"}]
    assert len(source.batches) == 2
    assert cache.counts[("sql", "hit")] == 3 and cache.counts[("sql", "miss")] == 4


async def test_a_fetch_in_flight_is_let_go_of_by_an_invalidation() -> None:
    # A load after a write must not share a fetch that began before it (and may have read
    # the old value): it asks the source again. The older fetch still answers its waiters.
    source = CountingSource()
    source.delay = 0.1
    cache = EntityCache(MemoryBackend(100), POLICY)
    load = cache.read_through("sql", "thing", source)
    before = asyncio.ensure_future(load([1]))
    await asyncio.sleep(0.02)  # its fetch is in flight
    await cache.invalidate("sql", "thing", keys=[1])
    after = asyncio.ensure_future(load([1]))
    assert await before == [{"id": "1"}] and await after == [{"id": "1"}]
    assert source.batches == [[1], [1]]
    await asyncio.sleep(0)
    assert not cache._inflight and not cache._inflight_owners


async def test_answers_are_no_fresher_than_what_they_read() -> None:
    clock = [1000.0]
    cache = EntityCache(MemoryBackend(100), POLICY, clock=lambda: clock[0])
    responses = ResponseCache(cache)
    fresh: dict[Any, float] = {}
    loader: DataLoader[int, Any] = DataLoader(
        cache.read_through("sql", "thing", CountingSource(), fresh=fresh),
        peek=cache.peek("sql", "thing", fresh),
        origin=("sql", "thing", False),
        fresh=fresh,
    )
    await loader.load(1)  # read from the source: fresh for the whole TTL
    clock[0] += 40  # the answer is kept 40 s on: it has what is left of the value's TTL
    reads = responses.reads([loader])
    assert reads is not None and reads.ttl == POLICY.ttls["sql"] - 40
    assert reads.tags == (cache.key("sql", "thing", 1) + "#r",)
    uncached: DataLoader[int, Any] = DataLoader(CountingSource())
    await uncached.load(3)
    assert responses.reads([loader, uncached]) is None  # no invalidation reaches it


async def test_not_found_is_cached_briefly() -> None:
    source = CountingSource()
    clock = [1000.0]
    cache = EntityCache(MemoryBackend(100), POLICY, clock=lambda: clock[0])
    load = cache.read_through("sql", "thing", source)
    assert await load([-1]) == [None]
    assert await load([-1]) == [None]
    assert len(source.batches) == 1
    clock[0] += POLICY.negative_ttl + 1
    assert await load([-1]) == [None]
    assert len(source.batches) == 2


async def test_an_expired_entry_bridges_a_source_outage() -> None:
    source = CountingSource()
    clock = [1000.0]
    cache = EntityCache(MemoryBackend(100), POLICY, clock=lambda: clock[0])
    load = cache.read_through("sql", "thing", source)
    await load([1])
    clock[0] += POLICY.ttls["sql"] + 30  # past freshness, within the grace
    source.failing = True
    [stale, missing] = await load([1, 2])
    assert stale == Stale({"id": "1"}, 90.0)
    assert isinstance(missing, SourceUnavailableError)
    assert cache.counts[("sql", "stale")] == 1


async def test_a_dead_redis_opens_the_breaker_and_reads_go_to_the_source() -> None:
    dead = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, breaker_seconds=60)
    source = CountingSource()
    cache = EntityCache(dead, POLICY)
    load = cache.read_through("sql", "thing", source)
    assert await load([1]) == [{"id": "1"}]
    assert await load([1]) == [{"id": "1"}]
    assert len(source.batches) == 2
    # The first read and write-back failed and opened the breaker; later calls skip Redis.
    assert dead.errors == 1
    assert cache.counts[("sql", "error")] >= 2
    with pytest.raises(CacheUnavailableError):
        await cache.invalidate("sql", "thing", keys=[1])
    await dead.close()


def test_entries_are_compact() -> None:
    # A tagged positional form, no field names: about the size of the values themselves.
    position = Position(at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), id="42")
    assert encode(position) == b'{"~":"Position","v":[{"~t":"2026-01-01T00:00:00+00:00"},"42"]}'


async def test_concurrent_reads_after_an_outage_replay_each_missed_invalidation_once(
    redis_namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    ns = redis_namespace
    backend = RedisBackend(url, timeout=0.5, breaker_seconds=0.05)
    applied: list[list[str]] = []
    tombstone = backend._tombstone

    async def counted(keys: list[str], tags: list[str], hold: float) -> None:
        await tombstone(keys, tags, hold)
        applied.append(keys)  # only once Redis took it

    backend._tombstone = counted  # type: ignore[method-assign]
    with own_redis(port, keep_in=tmp_path):
        await wait_for_redis(url)
        stale = [Put(f"{ns}:k{i}", entry(f"old {i}"), 60) for i in range(4)]
        await backend.put_many(stale)
    # Redis is gone: these invalidations are kept, in order.
    for i in range(4):
        with pytest.raises(CacheUnavailableError):
            await backend.invalidate([f"{ns}:k{i}"], [], hold=30)
    with own_redis(port, keep_in=tmp_path):
        await wait_for_redis(url)
        direct = Redis.from_url(url)
        assert await direct.get(f"{ns}:k0") is not None  # it came back with the stale entries
        await direct.aclose()
        keys = [p.key for p in stale]
        # Many requests read at once as Redis returns (past the breaker, within a deadline).
        results: list[Any] = []
        deadline = time.monotonic() + 10
        while not results or any(isinstance(r, BaseException) for r in results):
            assert time.monotonic() < deadline, results
            results = await asyncio.gather(
                *(backend.get_many(keys) for _ in range(50)), return_exceptions=True
            )
            assert not any(
                isinstance(r, BaseException) and not isinstance(r, CacheUnavailableError)
                for r in results
            ), results
        assert results == [[None] * 4] * 50
        # Each applied once, in order, whatever the number of readers.
        assert [key for keys in applied for key in keys] == [f"{ns}:k{i}" for i in range(4)]
        await backend.close()
