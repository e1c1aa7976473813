"""Live subscriptions, bounded per WebSocket and per principal across every socket and instance.

A socket may run `websocket_max_subscriptions` at once: one more is refused on its own
(TOO_MANY_SUBSCRIPTIONS), the socket stays open. A principal may hold
`limit_subscriptions_per_principal` across all its sockets: one more closes the socket that asked
with 4429 "too many subscriptions", since a client that opens socket after socket must be told
to stop, not to retry the subscription.

With Redis, each principal's live subscriptions are a sorted set of subscription ids scored by
when they lapse (`<cache_namespace>:subscriptions:<principal>`): the instance holding one
renews it every `LEASE_SECONDS / 3`, and removes it when the subscription ends, so an instance
that dies leaks nothing past one lease. Redis's own clock scores them, so instances' clocks
need not agree. Without Redis, or while it fails (a breaker, as for the rate limits), each
instance counts only its own: the cap then holds per instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError

from api.settings import Settings
from sources.optional_redis import RedisClient, redis_client
from sources.outage import Breaker, Outage, UnavailableError
from sources.redis_slots import run_script

if TYPE_CHECKING:
    from resolvers.context import Context

log = logging.getLogger(__name__)

# The close code of a socket refused by a limit (the principal's subscriptions, the rate limits):
# graphql-transport-ws's "too many", which its clients do not retry on their own.
TOO_MANY = 4429
# How long a subscription's entry outlives the last renewal by the instance that holds it.
LEASE_SECONDS = 60.0

# Drop lapsed entries, then add this one if the principal is under its cap. 1: added, 0: not.
_ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
# Renew this instance's entries of one principal; re-adds them if Redis lost them meanwhile.
_RENEW = """
local t = redis.call('TIME')
local lapse = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], lapse, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""


class PrincipalSubscriptions:
    """How many live subscriptions each principal holds, in Redis or in this process."""

    def __init__(self, settings: Settings, lease_seconds: float = LEASE_SECONDS) -> None:
        self.cap = settings.limit_subscriptions_per_principal
        self._prefix = f"{settings.cache_namespace}:subscriptions:"
        self._lease_ms = int(lease_seconds * 1000)
        self._renew_every = lease_seconds / 3
        self._timeout = settings.redis_timeout
        self._redis: RedisClient | None = (
            redis_client(settings.redis_url, self._timeout) if settings.redis_url else None
        )
        self._breaker = Breaker(
            Outage(
                "subscription limits: Redis",
                log,
                meanwhile="counting in this instance, trying Redis again every "
                f"{settings.redis_breaker_seconds}s",
            ),
            settings.redis_breaker_seconds,
            redis=self._redis,
        )
        # Subscription ids this instance holds, per principal: what it renews, and what it
        # counts when Redis cannot.
        self._held: dict[str, set[str]] = {}
        self._ids = (f"{uuid.uuid4().hex[:12]}-{n:x}" for n in itertools.count(1))
        self._renewer: asyncio.Task[None] | None = None
        # Releases of acquires cut short, running on after their caller was cancelled.
        self._releasing: set[asyncio.Task[None]] = set()
        if self._redis is not None:
            self._acquire = self._redis.register_script(_ACQUIRE)
            self._renew = self._redis.register_script(_RENEW)

    def start(self) -> None:
        """Renew this instance's entries in Redis while it runs."""
        if self._redis is not None and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever())

    async def close(self) -> None:
        """Stop renewing and close the Redis connections (entries lapse within a lease)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await asyncio.gather(*self._releasing, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()

    def held(self, principal: str) -> int:
        """The live subscriptions of `principal` in this instance."""
        return len(self._held.get(principal, ()))

    async def acquire(self, principal: str) -> str | None:
        """A new subscription id for `principal`, or None when it holds its cap already."""
        member = next(self._ids)
        try:
            admitted = await self._admitted(principal, member)
        except BaseException:
            # Cancelled (its socket closed): Redis may have added the entry all the same, which
            # nothing would renew or release, and which would count for a lease. Removed in a
            # task of its own, which a cancelled caller cannot cut short.
            releasing = asyncio.create_task(self.release(principal, member))
            self._releasing.add(releasing)
            releasing.add_done_callback(self._releasing.discard)
            raise
        if admitted:
            self._held.setdefault(principal, set()).add(member)
            return member
        return None

    async def release(self, principal: str, member: str) -> None:
        """End the subscription `member` of `principal`."""
        held = self._held.get(principal)
        if held is not None:
            held.discard(member)
            if not held:
                del self._held[principal]
        redis = self._redis
        if redis is not None:
            # Failing, the entry is not renewed any more and lapses within a lease.
            with contextlib.suppress(UnavailableError):
                await self._call(lambda: redis.zrem(self._prefix + principal, member))

    async def _admitted(self, principal: str, member: str) -> bool:
        if self._redis is not None:
            try:
                added = await self._call(
                    lambda: self._acquire(
                        keys=[self._prefix + principal], args=[member, self.cap, self._lease_ms]
                    )
                )
            except UnavailableError:
                pass
            else:
                return bool(added)
        return self.held(principal) < self.cap

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._renew_every)
            redis = self._redis
            if self._held and redis is not None:
                with contextlib.suppress(UnavailableError):  # renewed on the next pass
                    await self._call(functools.partial(self._renew_held, redis), round_trips=4)

    async def _call(self, operation: Any, round_trips: int = 2) -> Any:
        """`operation()` through the breaker; UnavailableError when Redis is skipped or fails."""
        return await self._breaker.call(operation, within=self._timeout * round_trips)

    async def _renew_held(self, redis: RedisClient) -> None:
        renewing = {principal: set(members) for principal, members in self._held.items()}
        # One principal's entries are one key: each renewal is one slot on a cluster.
        await run_script(
            redis,
            self._renew,
            [
                ([self._prefix + principal], [self._lease_ms, *members])
                for principal, members in renewing.items()
            ],
        )
        # One released while the renewal was under way may have been added back: remove it.
        for principal, members in renewing.items():
            ended = members - self._held.get(principal, set())
            if ended:
                await redis.zrem(self._prefix + principal, *ended)


@contextlib.asynccontextmanager
async def live_subscription(context: Context) -> AsyncIterator[None]:
    """Count one running subscription against its socket's and its principal's limits.

    Over the socket's limit: a TOO_MANY_SUBSCRIPTIONS error for this subscription. Over the
    principal's: the socket is closed with 4429 (the error raised then never reaches it).
    """
    settings = context.settings
    running = context.subscriptions
    if len(running) >= settings.websocket_max_subscriptions:
        raise _too_many(
            f"a connection may run {settings.websocket_max_subscriptions} subscriptions at "
            "once; complete one first"
        )
    # Counted from before the principal's count is asked (a Redis round trip): subscribes sent
    # together are each checked while the others are being counted.
    token = object()
    running.add(token)
    try:
        websocket = context.websocket
        if websocket is None:  # not over a socket: nothing else to count against
            yield
            return
        principals: PrincipalSubscriptions = websocket.app.state.guard.subscriptions
        principal = context.principal.key
        member = await principals.acquire(principal)
        if member is None:
            reason = f"too many subscriptions: at most {principals.cap} per principal"
            log.info("websocket closed: %s holds %d subscriptions", principal, principals.cap)
            with contextlib.suppress(Exception):  # closed meanwhile by the client
                await websocket.close(code=TOO_MANY, reason=reason)
            raise _too_many(reason)
        try:
            yield
        finally:
            await principals.release(principal, member)
    finally:
        running.discard(token)


def _too_many(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "TOO_MANY_SUBSCRIPTIONS"})
