"""Automatic Persisted Queries (Apollo's `persistedQuery` extension): query text by SHA-256.

A client first sends only the hash; when the server does not know it the client sends the
query with the hash, the server checks the hash and keeps the text. Kept in Redis when it is
configured, so every instance knows a query registered through any one of them; otherwise, or
while Redis does not answer (then a breaker skips it for `redis_breaker_seconds`), in an
in-process LRU: a Redis fault costs a client one more round trip with the full query, never
a failed request.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict

from sources.optional_redis import redis_client
from sources.outage import Breaker, Outage, UnavailableError

log = logging.getLogger(__name__)

_LOCAL_ENTRIES = 10_000


class PersistedQueries:
    """Registered query texts by hash, shared through Redis when there is one."""

    def __init__(
        self,
        redis_url: str | None,
        *,
        namespace: str,
        ttl: float,
        timeout: float,
        breaker_seconds: float,
    ) -> None:
        self._redis = redis_client(redis_url, timeout) if redis_url else None
        self._timeout = timeout
        self._breaker = Breaker(
            Outage("persisted queries: Redis", log, meanwhile="each instance keeps its own"),
            breaker_seconds,
            redis=self._redis,
        )
        self._prefix = f"{namespace}:apq:"
        self._ttl = ttl
        self._local: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, sha256: str) -> str | None:
        """The query registered under `sha256`, or None."""
        entry = self._local.get(sha256)
        if entry is not None and entry[0] > time.monotonic():
            self._local.move_to_end(sha256)
            return entry[1]
        if self._redis is not None:
            redis = self._redis
            try:
                value = await self._breaker.call(
                    lambda: redis.get(self._prefix + sha256), within=self._timeout * 2
                )
            except UnavailableError:
                return None
            if value is not None:
                query = value.decode() if isinstance(value, bytes) else str(value)
                self._remember(sha256, query)
                return query
        return None

    async def put(self, sha256: str, query: str) -> None:
        """Register `query` (whose hash the caller has checked) under `sha256`."""
        self._remember(sha256, query)
        if self._redis is not None:
            redis = self._redis
            with contextlib.suppress(UnavailableError):  # kept in this instance meanwhile
                await self._breaker.call(
                    lambda: redis.set(self._prefix + sha256, query, ex=int(self._ttl)),
                    within=self._timeout * 2,
                )

    async def close(self) -> None:
        """Close the Redis connection."""
        if self._redis is not None:
            await self._redis.aclose()

    def _remember(self, sha256: str, query: str) -> None:
        self._local[sha256] = (time.monotonic() + self._ttl, query)
        self._local.move_to_end(sha256)
        if len(self._local) > _LOCAL_ENTRIES:
            self._local.popitem(last=False)
