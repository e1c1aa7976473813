"""Where cache entries live: Redis (shared by every instance) or an in-process LRU.

Both keep the same contract: `get_many` answers per key (None for a miss or a tombstone),
`put_many` never overwrites a tombstone, and `invalidate` replaces entries (and every entry
under a tag) with a tombstone for `hold` seconds. The tombstone closes the classic race where
a read that started before a write puts the old value back after the write's invalidation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis

from sources.cache.codec import TOMBSTONE, CodecError, decode_entry, encode_entry
from sources.optional_redis import redis_client
from sources.outage import Breaker, Outage, UnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    value: Any
    written_at: float
    fresh_until: float


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    entry: Entry
    expire_in: float  # seconds: freshness plus the stale-if-error grace
    tag: str | None = None


class CacheUnavailableError(UnavailableError):
    """The cache store did not answer (down, slow, or its breaker is open)."""


class CacheBackend(Protocol):
    async def get_many(self, keys: list[str]) -> list[Entry | None]: ...

    async def put_many(self, puts: list[Put]) -> None: ...

    async def invalidate(self, keys: list[str], tags: list[str], hold: float) -> None: ...

    async def close(self) -> None: ...


class MemoryBackend:
    """An in-process LRU with TTLs and tags; the default when no Redis is configured."""

    def __init__(self, max_entries: int, clock: Any = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[Entry | None, float]] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self._max = max_entries
        self._clock = clock

    async def get_many(self, keys: list[str]) -> list[Entry | None]:
        return self.get_many_now(keys)

    def get_many_now(self, keys: list[str]) -> list[Entry | None]:
        """`get_many` without awaiting: the entries are in this process."""
        now = self._clock()
        found: list[Entry | None] = []
        for key in keys:
            item = self._entries.get(key)
            if item is None or item[1] <= now:
                found.append(None)
                continue
            self._entries.move_to_end(key)
            found.append(item[0])
        return found

    async def put_many(self, puts: list[Put]) -> None:
        now = self._clock()
        for put in puts:
            current = self._entries.get(put.key)
            if current is not None and current[0] is None and current[1] > now:
                continue  # tombstoned: a newer write is being made visible
            self._entries[put.key] = (put.entry, now + put.expire_in)
            self._entries.move_to_end(put.key)
            if put.tag:
                self._tags.setdefault(put.tag, set()).add(put.key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def invalidate(self, keys: list[str], tags: list[str], hold: float) -> None:
        until = self._clock() + hold
        for tag in tags:
            keys = [*keys, *self._tags.pop(tag, ())]
        for key in keys:
            self._entries[key] = (None, until)

    async def close(self) -> None:
        self._entries.clear()


# Write back entries unless tombstoned, tagging page entries with their owner, in one call.
_PUT = """
for i = 1, #KEYS / 2 do
  local key, tag = KEYS[i], KEYS[#KEYS / 2 + i]
  if redis.call('GET', key) ~= 'T' then
    redis.call('SET', key, ARGV[2 * i - 1], 'PX', ARGV[2 * i])
    if tag ~= key then
      redis.call('SADD', tag, key)
      redis.call('PEXPIRE', tag, ARGV[2 * i])
    end
  end
end
"""

# Tombstone the keys, and every key filed under the tags.
_INVALIDATE = """
local hold = ARGV[1]
local tags = tonumber(ARGV[2])
for i = 1, tags do
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    redis.call('SET', key, 'T', 'PX', hold)
  end
  redis.call('DEL', KEYS[i])
end
for i = tags + 1, #KEYS do
  redis.call('SET', KEYS[i], 'T', 'PX', hold)
end
"""

MAX_PENDING = 100_000
# Kept invalidations replayed in one script call, at most: an outage of many writes is applied
# in a few round trips, and a read waiting for the replay waits for those only.
REPLAY_BATCH_KEYS = 1_000


class RedisBackend:
    """Redis, shared by every c360 instance, behind a time limit and a circuit breaker.

    A failing or slow Redis opens the breaker for `breaker_seconds`: requests go straight to
    the sources meanwhile, and the first call after that tries Redis again. Whatever a call
    raises becomes CacheUnavailableError, so a Redis fault costs speed, never a request.
    Invalidations that could not reach Redis are kept (up to MAX_PENDING keys), in order, and
    applied before the next read once it answers again, so an entry written before the outage
    is not served after it.
    """

    def __init__(self, url: str, *, timeout: float, breaker_seconds: float) -> None:
        self._redis: Redis = redis_client(url, timeout)
        self._timeout = timeout
        self._breaker = Breaker(
            Outage("redis cache", log, meanwhile="reads go to the sources"),
            breaker_seconds,
            redis=self._redis,
        )
        self._pending: deque[tuple[list[str], list[str], float]] = deque()
        self._pending_keys = 0
        # One replayer at a time: each entry is applied once, in order, and removed only then.
        self._replaying = asyncio.Lock()
        self._put = self._redis.register_script(_PUT)
        self._invalidate = self._redis.register_script(_INVALIDATE)
        self.errors = 0

    async def _call(self, operation: Any) -> Any:
        try:
            # Two round trips at most: reconnecting after an outage, then the command.
            return await self._breaker.call(operation, within=self._timeout * 2)
        except UnavailableError as error:
            if error.__cause__ is not None:  # Redis was tried, and failed
                self.errors += 1
            raise CacheUnavailableError(*error.args) from error.__cause__

    async def _tombstone(self, keys: list[str], tags: list[str], hold: float) -> None:
        await self._invalidate(keys=[*tags, *keys], args=[int(hold * 1000), len(tags)])

    async def _flush_pending(self) -> None:
        if not self._pending:
            return  # the common case: no lock, no await
        async with self._replaying:
            while self._pending:
                # Tombstones commute: several kept invalidations go in one call, in order.
                keys: list[str] = []
                tags: list[str] = []
                hold, taken = 0.0, 0
                for entry_keys, entry_tags, entry_hold in self._pending:
                    if taken and len(keys) + len(tags) >= REPLAY_BATCH_KEYS:
                        break
                    keys += entry_keys
                    tags += entry_tags
                    hold = max(hold, entry_hold)
                    taken += 1
                await self._call(functools.partial(self._tombstone, keys, tags, hold))
                for _ in range(taken):
                    self._pending.popleft()
                self._pending_keys -= len(keys) + len(tags)

    async def get_many(self, keys: list[str]) -> list[Entry | None]:
        await self._flush_pending()
        raw = await self._call(lambda: self._redis.mget(keys))
        found: list[Entry | None] = []
        for data in raw:
            if data is None or data == TOMBSTONE:
                found.append(None)
                continue
            try:
                value, written_at, fresh_until = decode_entry(data)
            except CodecError:
                found.append(None)  # written by another version: a miss, overwritten soon
                continue
            found.append(Entry(value, written_at, fresh_until))
        return found

    async def put_many(self, puts: list[Put]) -> None:
        keys = [p.key for p in puts] + [p.tag or p.key for p in puts]
        args: list[Any] = []
        for put in puts:
            entry = put.entry
            args += [
                encode_entry(entry.value, entry.written_at, entry.fresh_until),
                max(int(put.expire_in * 1000), 1),
            ]
        await self._call(lambda: self._put(keys=keys, args=args))

    async def invalidate(self, keys: list[str], tags: list[str], hold: float) -> None:
        try:
            await self._flush_pending()
            await self._call(functools.partial(self._tombstone, keys, tags, hold))
        except CacheUnavailableError:
            if self._pending_keys + len(keys) + len(tags) > MAX_PENDING:
                log.error("dropping cache invalidations: Redis has been away too long")
            else:
                self._pending.append((keys, tags, hold))
                self._pending_keys += len(keys) + len(tags)
            raise

    async def close(self) -> None:
        await self._redis.aclose()
