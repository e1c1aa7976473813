"""Where cache entries live: Redis (shared by every instance) or an in-process LRU.

Both keep the same contract: `get_many` answers per key (None for a miss or a tombstone),
`put_many` never overwrites a tombstone, and `invalidate` replaces entries (and every entry
under a tag) with a tombstone for `hold` seconds. The tombstone closes the classic race where
a read that started before a write puts the old value back after the write's invalidation.
An invalidated tag is tombstoned too, for entries not yet filed under it: a page put back
under that tag within `hold` is not kept.

Blobs (`get_blob`, `put_blob`) are bytes kept as they are, filed under any number of tags:
the response cache's answers (`sources.cache.responses`). `get_blob` also says when it read,
on the store's clock (Redis's `TIME`, shared by every instance); a blob put with that time is
not kept when one of its tags was invalidated since (a request runs for less than `hold`),
and is kept when the invalidations all came before it, its own tombstone notwithstanding.

Over 400 lines: the Redis and in-process backends keep one contract (tombstones, tags, blobs,
the replay of invalidations after an outage); side by side, a change to one is made to the
other."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sources.cache.codec import TOMBSTONE, CodecError, decode_entry, encode_entry
from sources.optional_redis import RedisClient, redis_client
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
    # Whether keys must carry hash tags: what one call touches must share a cluster slot.
    hash_tags: bool

    async def get_many(self, keys: list[str]) -> list[Entry | None]: ...

    async def put_many(self, puts: list[Put]) -> None: ...

    async def get_blob(self, key: str) -> tuple[bytes | None, float]: ...

    async def put_blob(
        self,
        key: str,
        blob: bytes,
        expire_in: float,
        tags: Sequence[str],
        read_at: float,
        within: float,
    ) -> bool: ...

    async def invalidate(self, keys: list[str], tags: list[str], hold: float) -> None: ...

    async def close(self) -> None: ...


class MemoryBackend:
    """An in-process LRU with TTLs and tags; the default when no Redis is configured."""

    hash_tags = False

    def __init__(self, max_entries: int, clock: Any = time.monotonic) -> None:
        # Key -> (an Entry, a blob, or None for a tombstone; when it expires).
        self._entries: OrderedDict[str, tuple[Entry | bytes | None, float]] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self._filed: dict[str, tuple[str, ...]] = {}  # key -> its tags, to unfile it on eviction
        # Invalidated tag -> (when it was invalidated, until when its tombstone lasts).
        self._gone: dict[str, tuple[float, float]] = {}
        self._max = max_entries
        self._clock = clock

    async def get_many(self, keys: list[str]) -> list[Entry | None]:
        return [self.get_now(key) for key in keys]

    def get_now(self, key: str) -> Entry | None:
        """One key's entry without awaiting (None when absent, expired, or a blob)."""
        item = self._entries.get(key)
        if item is None or type(item[0]) is bytes or item[1] <= self._clock():
            return None
        self._entries.move_to_end(key)
        return item[0]  # type: ignore[return-value]

    async def put_many(self, puts: list[Put]) -> None:
        now = self._clock()
        for put in puts:
            tags = (put.tag,) if put.tag else ()
            self._keep(put.key, put.entry, now + put.expire_in, tags, now)
        self._evict()

    async def get_blob(self, key: str) -> tuple[bytes | None, float]:
        now = self._clock()
        item = self._entries.get(key)
        if item is None or item[1] <= now or type(item[0]) is not bytes:
            return None, now
        self._entries.move_to_end(key)
        return item[0], now

    async def put_blob(
        self,
        key: str,
        blob: bytes,
        expire_in: float,
        tags: Sequence[str],
        read_at: float,
        within: float,
    ) -> bool:
        now = self._clock()
        if now - read_at >= within:
            return False  # older than the tombstones that would say what changed since
        kept = self._keep(key, blob, now + expire_in, tuple(tags), now, read_at)
        self._evict()
        return kept

    def _keep(
        self,
        key: str,
        value: Entry | bytes,
        until: float,
        tags: tuple[str, ...],
        now: float,
        read_at: float | None = None,
    ) -> bool:
        """Keep `value` under `key` and `tags`, unless a tag was invalidated since `read_at`
        or, for an entry put with no `read_at`, the key or a tag is tombstoned."""
        current = self._entries.get(key)
        tombstoned = current is not None and current[0] is None and current[1] > now
        if tombstoned and read_at is None:
            return False
        gone = self._gone
        for tag in tags if gone else ():
            invalidated, lasts = gone.get(tag, (0.0, 0.0))
            if lasts > now and (read_at is None or invalidated >= read_at):
                return False
        self._unfile(key)  # its tags may not be the ones it had
        self._entries[key] = (value, until)
        self._entries.move_to_end(key)
        if tags:
            for tag in tags:
                self._tags.setdefault(tag, set()).add(key)
            self._filed[key] = tags
        return True

    def _evict(self) -> None:
        while len(self._entries) > self._max:
            key, _ = self._entries.popitem(last=False)
            self._unfile(key)

    def _unfile(self, key: str) -> None:
        for tag in self._filed.pop(key, ()):
            members = self._tags.get(tag)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._tags[tag]

    async def invalidate(self, keys: list[str], tags: list[str], hold: float) -> None:
        now = self._clock()
        until = now + hold
        if len(self._gone) > self._max:  # forget tombstones of tags that have lapsed
            self._gone = {tag: gone for tag, gone in self._gone.items() if gone[1] > now}
        for tag in tags:
            keys = [*keys, *self._tags.pop(tag, ())]
            self._gone[tag] = (now, until)
        for key in keys:
            self._unfile(key)
            self._entries[key] = (None, until)

    async def close(self) -> None:
        self._entries.clear()
        self._tags.clear()
        self._filed.clear()
        self._gone.clear()


# Write back entries unless tombstoned (the key, or its tag), tagging page entries with their
# owner, in one call. A tag's set lives as long as its longest-lived member.
_PUT = """
for i = 1, #KEYS / 2 do
  local key, tag = KEYS[i], KEYS[#KEYS / 2 + i]
  local px = tonumber(ARGV[2 * i])
  if redis.call('GET', key) ~= 'T'
      and (tag == key or redis.call('EXISTS', tag .. '#gone') == 0) then
    redis.call('SET', key, ARGV[2 * i - 1], 'PX', px)
    if tag ~= key then
      redis.call('SADD', tag, key)
      if redis.call('PTTL', tag) < px then
        redis.call('PEXPIRE', tag, px)
      end
    end
  end
end
"""

# A blob and the store's time (microseconds), read in one call.
_GET_BLOB = """
local now = redis.call('TIME')
return {redis.call('GET', KEYS[1]), now[1] * 1000000 + now[2]}
"""

# Keep a blob under its tags unless one of them was invalidated at or after ARGV[3], or the
# read is ARGV[4] old (microseconds; the tombstones that would tell are gone by then); 1 if it
# was kept. The blob's own tombstone, left by an invalidation of one of its tags, is
# overwritten: the tags' times decide. A large tag set sheds a few members that have expired,
# so a tag no event invalidates (a product's) does not grow for ever.
_PUT_BLOB = """
local px = tonumber(ARGV[2])
local read_at = tonumber(ARGV[3])
local now = redis.call('TIME')
if now[1] * 1000000 + now[2] - read_at >= tonumber(ARGV[4]) then
  return 0
end
for i = 2, #KEYS do
  local invalidated = redis.call('GET', KEYS[i] .. '#gone')
  if invalidated and tonumber(invalidated) >= read_at then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', px)
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < px then
    redis.call('PEXPIRE', KEYS[i], px)
  end
  if redis.call('SCARD', KEYS[i]) > 256 then
    for _, member in ipairs(redis.call('SRANDMEMBER', KEYS[i], 8)) do
      if redis.call('EXISTS', member) == 0 then
        redis.call('SREM', KEYS[i], member)
      end
    end
  end
end
return 1
"""

# Tombstone the keys, every key filed under the tags, and the tags themselves (with the
# store's time, microseconds, so a blob read before it is not put back).
_INVALIDATE = """
local hold = ARGV[1]
local tags = tonumber(ARGV[2])
local now = redis.call('TIME')
local stamp = now[1] * 1000000 + now[2]
for i = 1, tags do
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    redis.call('SET', key, 'T', 'PX', hold)
  end
  redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[i] .. '#gone', stamp, 'PX', hold)
end
for i = tags + 1, #KEYS do
  redis.call('SET', KEYS[i], 'T', 'PX', hold)
end
"""


def put_call(puts: Sequence[Put]) -> tuple[list[str], list[Any]]:
    """The keys and arguments of one `_PUT` call writing `puts`."""
    keys = [p.key for p in puts] + [p.tag or p.key for p in puts]
    args: list[Any] = []
    for put in puts:
        entry = put.entry
        args += [
            encode_entry(entry.value, entry.written_at, entry.fresh_until),
            max(int(put.expire_in * 1000), 1),
        ]
    return keys, args


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

    hash_tags = False

    def __init__(self, url: str, *, timeout: float, breaker_seconds: float) -> None:
        self._redis: RedisClient = redis_client(url, timeout)
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
        self._get_blob = self._redis.register_script(_GET_BLOB)
        self._put_blob = self._redis.register_script(_PUT_BLOB)
        self._invalidate = self._redis.register_script(_INVALIDATE)
        self._mget: Callable[[list[str]], Awaitable[list[Any]]] = self._redis.mget
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
        raw = await self._call(lambda: self._mget(keys))
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
        keys, args = put_call(puts)
        await self._call(lambda: self._put(keys=keys, args=args))

    async def get_blob(self, key: str) -> tuple[bytes | None, float]:
        await self._flush_pending()
        data, now = await self._call(lambda: self._get_blob(keys=[key]))
        return (None if data is None or data == TOMBSTONE else data), now / 1_000_000

    async def put_blob(
        self,
        key: str,
        blob: bytes,
        expire_in: float,
        tags: Sequence[str],
        read_at: float,
        within: float,
    ) -> bool:
        # Invalidations kept through an outage are stamped first, so they refuse this blob
        # if they came after its read.
        await self._flush_pending()
        px = max(int(expire_in * 1000), 1)
        args: list[bytes | int] = [blob, px, int(read_at * 1_000_000), int(within * 1_000_000)]
        kept = await self._call(lambda: self._put_blob(keys=[key, *tags], args=args))
        return bool(kept)

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
