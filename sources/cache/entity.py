"""The read-through entity cache every loader goes through.

A batch of keys costs one cache read; the misses cost one batched source call, shared with
any concurrent request missing the same keys (single flight, within this instance; across
instances a duplicate call is accepted: it costs one extra batch, never a wrong answer); the
results cost one write-back. When the source fails, an expired entry still within the grace
period is served instead, marked `Stale` so the response can say so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sources.cache.backends import CacheBackend, CacheUnavailableError, Entry, MemoryBackend, Put
from sources.cache.codec import RESPONSE_TAG, key_text, owner_of, shape_version
from sources.dataloader import MISSING
from sources.errors import SourceError
from sources.redis_slots import hash_tag

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger(__name__)
# How long closing the cache waits for fetches in flight before it cancels them.
CLOSE_WAIT_SECONDS = 2.0

Fetch = Callable[[Sequence[K]], Awaitable[list[V | None]]]

HIT, MISS, STALE, INVALIDATION, ERROR = "hit", "miss", "stale", "invalidation", "error"


@dataclass(frozen=True, slots=True)
class Stale(Generic[V]):
    """A value served from an expired entry because its source failed."""

    value: V
    age: float


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long entries of each source stay fresh, and what happens around that."""

    ttls: dict[str, float]  # per source, seconds
    negative_ttl: float  # for "not found", seconds
    stale_grace: float  # how long past freshness an entry may still bridge an outage
    hold: float  # how long an invalidation's tombstone blocks late write-backs


class EntityCache:
    """Read-through caching of loader batches, with invalidation and per-source counters."""

    def __init__(
        self,
        backend: CacheBackend,
        policy: CachePolicy,
        *,
        namespace: str = "c360",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.prefix = f"{namespace}:{shape_version()}:"
        # On a Redis Cluster each key carries its owner as a hash tag: a page, its owner's
        # tag and the tag's tombstone share a slot, as the write-back script needs; and one
        # customer's entries share one. Chosen here once: nothing is added per key elsewhere.
        self.key: Callable[[str, str, Any], str] = (
            self._slotted_key if backend.hash_tags else self._plain_key
        )
        self.tag: Callable[[str, str, Any], str] = (
            self._slotted_tag if backend.hash_tags else self._plain_tag
        )
        self.counts: Counter[tuple[str, str]] = Counter()
        self.clock = clock  # the time entries' `fresh_until` is in
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._inflight_owners: dict[str, str] = {}  # an in-flight page's key -> its owner tag
        self._tasks: set[asyncio.Task[None]] = set()

    def _plain_key(self, source: str, name: str, key: Any) -> str:
        return f"{self.prefix}{source}:{name}:{key_text(key)}"

    def _plain_tag(self, source: str, name: str, owner: Any) -> str:
        return f"{self.prefix}{source}:{name}:owner:{owner}"

    def _slotted_key(self, source: str, name: str, key: Any) -> str:
        return f"{self.prefix}{source}:{name}:{hash_tag(owner_of(key))}{key_text(key)}"

    def _slotted_tag(self, source: str, name: str, owner: Any) -> str:
        return f"{self.prefix}{source}:{name}:owner:{hash_tag(str(owner))}"

    def read_through(
        self,
        source: str,
        name: str,
        fetch: Fetch[K, V],
        *,
        tagged: bool = False,
        fresh: dict[Any, float] | None = None,
    ) -> Callable[[Sequence[K]], Awaitable[list[Any]]]:
        """A batch function answering from the cache, then from `fetch` for the misses.

        Each result is the value, a `Stale` value, or a SourceError instance for that key.
        `tagged` files entries under their owner, so `invalidate(owners=...)` reaches every
        page of one customer whatever its page arguments. `fresh` is told until when each
        value answered (not stale) stays fresh (`clock` time), for the response cache.
        """

        async def load(keys: Sequence[K]) -> list[Any]:
            cache_keys = [self.key(source, name, k) for k in keys]
            entries = await self._get(source, cache_keys)
            now = self.clock()
            results: list[Any] = [None] * len(keys)
            missing: list[int] = []
            for index, entry in enumerate(entries):
                if entry is not None and entry.fresh_until > now:
                    results[index] = entry.value
                    if fresh is not None:
                        fresh[keys[index]] = entry.fresh_until
                else:
                    missing.append(index)
            self.counts[(source, HIT)] += len(keys) - len(missing)
            self.counts[(source, MISS)] += len(missing)
            if not missing:
                return results
            outcomes = await self._shared_fetch(
                source,
                name,
                fetch,
                [keys[i] for i in missing],
                [cache_keys[i] for i in missing],
                tagged,
            )
            for index, outcome in zip(missing, outcomes, strict=True):
                entry = entries[index]
                if isinstance(outcome, SourceError) and entry is not None:
                    # Still held, so within the grace period: bridge the outage with it.
                    self.counts[(source, STALE)] += 1
                    results[index] = Stale(entry.value, max(0.0, now - entry.written_at))
                elif isinstance(outcome, SourceError):
                    results[index] = type(outcome)(outcome.source, outcome.detail)
                else:
                    results[index] = outcome
                    if fresh is not None:
                        fresh[keys[index]] = now + self._freshness(source, outcome)
            return results

        return load

    def peek(
        self, source: str, name: str, fresh: dict[Any, float] | None = None
    ) -> Callable[[Sequence[K]], list[Any]] | None:
        """For a cache in this process: the fresh entries of a batch's keys, read without
        awaiting (`MISSING` for the others, which `read_through` then loads). A loader answers
        a batch of hits from it with no task; None for a cache across the network. `fresh`
        is told until when each value found stays fresh, as by `read_through`."""
        backend = self.backend
        if not isinstance(backend, MemoryBackend):
            return None
        read = backend.get_now
        prefix = self.key(source, name, "")  # what `key` puts before the key's text
        clock, counts, hit = self.clock, self.counts, (source, HIT)

        def peek(keys: Sequence[K]) -> list[Any]:
            # A loader peeks at each key it is asked for, one at a time as a rule: this runs
            # ~40 times per agent query, so it reads one entry at a time with no lists between.
            now = clock()
            values: list[Any] = []
            hits = 0
            for key in keys:
                entry = read(prefix + key_text(key))
                if entry is not None and entry.fresh_until > now:
                    values.append(entry.value)
                    hits += 1
                    if fresh is not None:
                        fresh[key] = entry.fresh_until
                else:
                    values.append(MISSING)
            if hits:
                counts[hit] += hits
            return values

        return peek

    async def _get(self, source: str, keys: list[str]) -> list[Entry | None]:
        try:
            return await self.backend.get_many(keys)
        except CacheUnavailableError:
            self.counts[(source, ERROR)] += 1
            return [None] * len(keys)

    async def _shared_fetch(
        self,
        source: str,
        name: str,
        fetch: Fetch[K, V],
        keys: list[K],
        cache_keys: list[str],
        tagged: bool,
    ) -> list[Any]:
        loop = asyncio.get_running_loop()
        mine_keys: list[K] = []
        mine_cache_keys: list[str] = []
        mine: list[asyncio.Future[Any]] = []
        futures: list[asyncio.Future[Any]] = []
        for key, cache_key in zip(keys, cache_keys, strict=True):
            future = self._inflight.get(cache_key)
            if future is None:
                future = loop.create_future()
                self._inflight[cache_key] = future
                if tagged:
                    self._inflight_owners[cache_key] = self.tag(source, name, owner_of(key))
                mine_keys.append(key)
                mine_cache_keys.append(cache_key)
                mine.append(future)
            futures.append(future)
        if mine_keys:
            # Its own task: a requester that goes away must not cancel the call others await.
            task = loop.create_task(
                self._fetch_and_fill(source, name, fetch, mine_keys, mine_cache_keys, mine, tagged)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return [await asyncio.shield(future) for future in futures]

    async def _fetch_and_fill(
        self,
        source: str,
        name: str,
        fetch: Fetch[K, V],
        keys: list[K],
        cache_keys: list[str],
        futures: list[asyncio.Future[Any]],
        tagged: bool,
    ) -> None:
        try:
            values: list[Any] = await fetch(keys)
        except SourceError as error:
            values = [error] * len(keys)
        except BaseException as error:
            for future in futures:
                future.set_exception(error)
                future.exception()  # retrieved here; each waiter re-raises it
            raise
        finally:
            for cache_key, future in zip(cache_keys, futures, strict=True):
                # Unless an invalidation let go of it and a newer fetch took its place.
                if self._inflight.get(cache_key) is future:
                    del self._inflight[cache_key]
                    self._inflight_owners.pop(cache_key, None)
        fetched = [
            (k, ck, v)
            for k, ck, v in zip(keys, cache_keys, values, strict=True)
            if not isinstance(v, SourceError)
        ]
        # Resolve before the write-back: waiters need not wait for the cache store.
        for future, value in zip(futures, values, strict=True):
            future.set_result(value)
        if fetched:
            await self._put(source, name, fetched, tagged)

    async def _put(
        self, source: str, name: str, fetched: list[tuple[Any, str, Any]], tagged: bool
    ) -> None:
        now = self.clock()
        policy = self.policy
        puts = []
        for key, cache_key, value in fetched:
            fresh = self._freshness(source, value)
            puts.append(
                Put(
                    key=cache_key,
                    entry=Entry(value, now, now + fresh),
                    expire_in=fresh + policy.stale_grace,
                    tag=self.tag(source, name, owner_of(key)) if tagged else None,
                )
            )
        try:
            await self.backend.put_many(puts)
        except CacheUnavailableError:
            self.counts[(source, ERROR)] += 1

    async def invalidate(
        self,
        source: str,
        name: str,
        *,
        keys: Sequence[Any] = (),
        owners: Sequence[Any] = (),
    ) -> None:
        """Make the entries of `keys`, and every entry filed under `owners`, unreadable.

        Call it before a write is acknowledged: a read after that sees the write, in this
        instance and in every instance sharing the cache store. Raises CacheUnavailableError
        when the store cannot be reached (the invalidation is retried when it answers again).
        The response cache's answers built on them are invalidated with them, and a fetch of
        them still in flight is let go of: a load after this asks the source again rather
        than share a fetch that may have read the old value.
        """
        self.counts[(source, INVALIDATION)] += len(keys) + len(owners)
        entries = [self.key(source, name, k) for k in keys]
        tags = [self.tag(source, name, o) for o in owners]
        if self._inflight:
            gone, owned = set(entries), set(tags)
            for cache_key in list(self._inflight):
                if cache_key in gone or self._inflight_owners.get(cache_key) in owned:
                    del self._inflight[cache_key]
                    self._inflight_owners.pop(cache_key, None)
        answers = [filed + RESPONSE_TAG for filed in (*entries, *tags)]
        try:
            await self.backend.invalidate(entries, tags + answers, self.policy.hold)
        except CacheUnavailableError:
            self.counts[(source, ERROR)] += 1
            raise

    def _freshness(self, source: str, value: Any) -> float:
        """How long a value just read from its source stays fresh."""
        return self.policy.negative_ttl if value is None else self.policy.ttls[source]

    async def close(self, wait: float = CLOSE_WAIT_SECONDS) -> None:
        """Let the fetches in flight finish and keep what they read, for `wait` seconds at
        most, then cancel the rest: a shutdown must not wait out a slow source's timeout."""
        running = list(self._tasks)
        if running:
            _, pending = await asyncio.wait(running, timeout=wait)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.backend.close()
