"""Rate limits per principal and per client address, shared by every instance through Redis.

Each request counts against its principal and its address: `rate_limit_principal` and
`rate_limit_ip`, in `limits`' syntax ("600/minute", or several as "10/second;600/minute").
The windows are sliding window counters: the current fixed window's count plus the previous
window's, weighted by how much of it still overlaps the last full window back from now. A
burst across a window boundary is counted as it is with a moving window, but each key costs
two counters, not one timestamp per request (a moving window's list makes every hit O(N) in
memory and time, which costs more than the request it guards at high limits).

The counts live in Redis when `redis_url` is set (keys under `<cache_namespace>:ratelimit:`),
so every instance sees the same counts; in this process otherwise. A Redis that fails in any
way or does not answer within `redis_timeout` opens a breaker for `redis_breaker_seconds`, as
the cache does: meanwhile this instance counts on its own (each instance then allows the full
limit, and the counts start afresh), and the first request after that tries Redis again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from limits import RateLimitItem, WindowStats, parse_many
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio.cluster import RedisCluster

from api.settings import Settings
from sources.optional_redis import (
    CLUSTER_OPTIONS,
    RedisClient,
    breaker_options,
    is_cluster,
    query_options,
    redis_client,
)
from sources.outage import Breaker, Outage, UnavailableError

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a request may proceed; when not, which limit refused it and for how long."""

    allowed: bool
    retry_after: int = 0  # whole seconds, at least 1 when refused
    limit: str = ""  # "principal" or "ip" when refused


ALLOWED = RateDecision(allowed=True)


@dataclass(frozen=True, slots=True)
class _Check:
    kind: str  # "principal" or "ip"
    item: RateLimitItem
    who: str


@dataclass(slots=True)
class _Counters:
    window: int  # index of the current fixed window
    current: int
    previous: int


# A hair past the moment a slot frees up: at the moment itself the count is still one too many.
_PAST = 0.001


class SharedWindows(SlidingWindowCounterRateLimiter):
    """limits' sliding window counter in Redis, telling when the next request would pass.

    limits' own reset time is when the weighted count next falls by one, which can come before
    a request fits (a spent current window only becomes the previous one, at full weight): a
    client that waited `Retry-After` would be refused again.
    """

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """When the next request would fit, and how many remain."""
        storage: RedisStorage = self.storage  # type: ignore[assignment]
        previous, previous_in, current, current_in = await storage.get_sliding_window(
            item.key_for(*identifiers), item.get_expiry()
        )
        now = time.time()
        period = item.get_expiry()
        # As limits' Lua script counts: floor(previous * previous_in / period) + current.
        remaining = max(0, item.amount - math.floor(previous * previous_in / period) - current)
        room = item.amount - 1 - current
        if room >= 0:
            # Fits once the previous window's weight has fallen to `room`.
            wait = max(0.0, previous_in - (room + 1) * period / previous) if previous else 0.0
        else:
            # This window alone is spent: once it ends (its key lives two periods), it is the
            # previous one, and its weight must fall below the limit.
            ends_in = max(0.0, current_in - period)
            wait = ends_in + max(0.0, period - item.amount * period / current)
        return WindowStats(reset_time=now + wait + _PAST, remaining=remaining)


class LocalWindows:
    """The sliding window counter of `limits`, kept in this process's memory.

    limits' own MemoryStorage schedules a clean-up task on every hit; on the event loop that
    costs more than the count itself. Here a key is two counters, read and written without
    awaiting, so no lock is needed either; keys of ended windows are dropped as they are seen.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._counters: dict[tuple[Any, ...], _Counters] = {}
        self._max_keys = max_keys

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Count one request; False (not counted) when the limit is spent."""
        now = time.time()
        counters = self._roll(item, identifiers, now)
        if self._weighted(item, counters, now) + 1 > item.amount:
            return False
        counters.current += 1
        return True

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """When the next request would fit, and how many remain."""
        now = time.time()
        counters = self._roll(item, identifiers, now)
        period = item.get_expiry()
        start = counters.window * period
        room = item.amount - 1 - counters.current
        if room < 0:
            # This window alone is spent: in the next one, it becomes the weighted previous.
            start, room, previous = start + period, item.amount - 1, counters.current
        else:
            previous = counters.previous
        # The previous window's weight falls as time passes: a slot frees up once it has
        # fallen to `room`.
        reset = start + period * max(0.0, 1 - room / previous) if previous else now
        used = self._weighted(item, counters, now)
        return WindowStats(reset_time=reset, remaining=max(0, int(item.amount - used)))

    def _roll(self, item: RateLimitItem, identifiers: tuple[str, ...], now: float) -> _Counters:
        # The limiter's own parsed limits, alive as long as it is: their identity names them
        # (limits' `key_for` formats a string on every request).
        key = (id(item), *identifiers)
        window = int(now // item.get_expiry())
        counters = self._counters.get(key)
        if counters is None:
            if len(self._counters) >= self._max_keys:
                self._counters = {k: c for k, c in self._counters.items() if c.window >= window - 1}
            counters = self._counters[key] = _Counters(window, 0, 0)
        elif counters.window != window:
            counters.previous = counters.current if counters.window == window - 1 else 0
            counters.current = 0
            counters.window = window
        return counters

    @staticmethod
    def _weighted(item: RateLimitItem, counters: _Counters, now: float) -> float:
        period = item.get_expiry()
        overlap = 1 - (now - counters.window * period) / period
        return counters.previous * overlap + counters.current


class RateLimiter:
    """Per-principal and per-address request limits, in Redis or in this process."""

    def __init__(self, settings: Settings) -> None:
        self._enabled = settings.rate_limit_enabled
        self._limits = {
            "principal": parse_many(settings.rate_limit_principal),
            "ip": parse_many(settings.rate_limit_ip),
        }
        self._local = LocalWindows()
        self._timeout = settings.redis_timeout
        shared_url = settings.redis_url if self._enabled else None
        self._shared: SharedWindows | None = None
        self._redis: RedisClient | None = None
        if shared_url:
            storage, self._redis = _shared_storage(
                shared_url, self._timeout, f"{settings.cache_namespace}:ratelimit"
            )
            self._shared = SharedWindows(storage)
        self._breaker = Breaker(
            Outage(
                "rate limits: Redis",
                log,
                meanwhile="counting in this instance, trying Redis again every "
                f"{settings.redis_breaker_seconds}s",
            ),
            settings.redis_breaker_seconds,
            redis=self._redis,
        )

    async def hit(self, *, principal: str | None, ip: str | None) -> RateDecision:
        """Count one request against its principal and its address; refused if either is spent."""
        if not self._enabled:
            return ALLOWED
        shared = self._shared
        if shared is None or self._breaker.open:
            return self._hit_here(principal, ip)
        checks = self._checks(principal, ip)
        if not checks:
            return ALLOWED
        try:
            # At most two round trips: the hits, then the windows of the refusing limits.
            return await self._breaker.call(
                lambda: _decide_shared(shared, checks), within=self._timeout * 2
            )
        except UnavailableError:
            return self._hit_here(principal, ip)  # counted in this process meanwhile

    def _checks(self, principal: str | None, ip: str | None) -> list[_Check]:
        """One check for each limit of the principal and of the address (when known)."""
        return [
            _Check(kind, item, who)
            for kind, who in (("principal", principal), ("ip", ip))
            if who
            for item in self._limits[kind]
        ]

    def _hit_here(self, principal: str | None, ip: str | None) -> RateDecision:
        """Counted in this process: nothing waits, and nothing is made for a limit that is
        not spent (this runs on every request)."""
        local = self._local
        refused: list[_Check] = []
        for kind, who in (("principal", principal), ("ip", ip)):
            if who:
                for item in self._limits[kind]:
                    if not local.hit(item, kind, who):
                        refused.append(_Check(kind, item, who))
        if not refused:
            return ALLOWED
        return _refusal(refused, [local.get_window_stats(c.item, c.kind, c.who) for c in refused])

    async def close(self) -> None:
        """Close the Redis connections."""
        if self._redis is not None:
            await self._redis.aclose()


async def _decide_shared(shared: SharedWindows, checks: list[_Check]) -> RateDecision:
    """Hit every limit of the request in Redis; refused by the one that frees up last."""
    allowed = await _all([shared.hit(c.item, c.kind, c.who) for c in checks])
    refused = [check for check, ok in zip(checks, allowed, strict=True) if not ok]
    if not refused:
        return ALLOWED
    return _refusal(
        refused, await _all([shared.get_window_stats(c.item, c.kind, c.who) for c in refused])
    )


def _refusal(refused: list[_Check], windows: Sequence[WindowStats]) -> RateDecision:
    """The answer to a request some limits refused: wait for the one that frees up last."""
    now = time.time()
    waits = [
        (max(1, math.ceil(window.reset_time - now)), check.kind)
        for check, window in zip(refused, windows, strict=True)
    ]
    retry_after, kind = max(waits)
    return RateDecision(allowed=False, retry_after=retry_after, limit=kind)


async def _all(calls: Sequence[Awaitable[_T]]) -> list[_T]:
    """Every call's result, run concurrently; the first failure raised once all have ended."""
    # return_exceptions: a failing call must not leave its siblings running unobserved.
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def _shared_storage(url: str, timeout: float, prefix: str) -> tuple[RedisStorage, RedisClient]:
    """limits' storage of the counts in the Redis, or the Redis Cluster, at `url`, and the
    client it counts with (whose idle sockets the breaker drops after a failure)."""
    if not is_cluster(url):
        redis = redis_client(url, timeout)
        storage = RedisStorage(
            _storage_uri(url),
            implementation="redispy",
            key_prefix=prefix,
            # Documented by limits (handed to redis-py's client), typed narrower there.
            connection_pool=redis.connection_pool,  # type: ignore[arg-type,union-attr]
        )
        return storage, redis
    # limits builds its cluster client itself, from the startup nodes of the URL; its sliding
    # windows' two keys share a hash tag, so each count is one slot.
    cluster = RedisClusterStorage(
        _storage_uri(url),
        implementation="redispy",
        key_prefix=prefix,
        **CLUSTER_OPTIONS,
        **breaker_options(timeout),
        # limits reads the nodes and credentials off the URL, not its query (TLS files...).
        **query_options(url),
        **({"ssl": True} if url.startswith("rediss") else {}),
    )
    bridge = cluster.bridge
    client = bridge.get_connection() if isinstance(bridge, RedispyBridge) else None
    if not isinstance(client, RedisCluster):
        raise TypeError(f"limits counts with {type(client).__name__}, not redis-py's cluster")
    return cluster, client


def _storage_uri(redis_url: str) -> str:
    """limits' name for a redis-py URL: `async+redis://…`, `async+redis+unix://…`,
    `async+redis+cluster://host:port,host:port` (TLS is an option there, not a scheme)."""
    if redis_url.startswith("unix://"):
        return f"async+redis+{redis_url}"
    return "async+" + redis_url.replace("rediss+cluster://", "redis+cluster://", 1)
