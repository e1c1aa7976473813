"""The Redis client of a store c360 can do without (the cache, the shared limits, persisted
queries): each call is judged by a Breaker's Deadline, and a Redis that fails is skipped."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from sources.deadline import SOCKET_BACKSTOP


def redis_client(url: str, timeout: float) -> Redis:
    """A client of the Redis at `url` for calls given `timeout` per round trip by a Breaker."""
    return Redis.from_url(
        url,
        # A backstop only: the breaker's Deadline judges each call, and does not count the time
        # the event loop was busy elsewhere, as a socket timeout would.
        socket_timeout=timeout * SOCKET_BACKSTOP,
        socket_connect_timeout=timeout * SOCKET_BACKSTOP,
        # One immediate retry on a broken connection: after an outage the pool still holds dead
        # sockets, and the first use of each fails even though Redis is back (the Breaker drops
        # the idle ones when a call fails).
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        health_check_interval=0,
    )
