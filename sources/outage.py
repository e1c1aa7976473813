"""Outages told once: a store that fails is logged when it goes down and when it is back,
not on every attempt in between; and a breaker that skips a store for a while after it failed.

A background loop that retries a failing store every half second would otherwise log a
traceback per pass (99 in one Redis outage), burying the one line that says what happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymongo.errors import PyMongoError
from redis.exceptions import RedisClusterException, RedisError
from sqlalchemy.exc import SQLAlchemyError

from sources.deadline import Deadline
from sources.errors import SourceError
from sources.optional_redis import RedisClient, drop_idle_connections

T = TypeVar("T")

# What a failing Redis raises: redis-py's errors (a cluster's own too: a slot no node serves, no
# node reachable to read the slot map from), socket errors, and a time limit.
REDIS_FAILURES: tuple[type[Exception], ...] = (
    RedisError,
    RedisClusterException,
    OSError,
    TimeoutError,
)
# What any store raises when it is down or does not answer.
STORE_FAILURES: tuple[type[Exception], ...] = (
    *REDIS_FAILURES,
    SQLAlchemyError,
    PyMongoError,
    SourceError,
)


def stopping() -> bool:
    """Whether the current task is being cancelled.

    A client library may turn the cancellation of a call under way into an error of its own
    (redis-py does, reconnecting): a background loop that retries on errors must check this,
    or it swallows its own stop and never ends.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Outage:
    """The up/down state of one store as seen by one caller, logged on each change."""

    def __init__(self, what: str, logger: logging.Logger, *, meanwhile: str = "") -> None:
        self.what = what
        self._log = logger
        self._meanwhile = f"; {meanwhile}" if meanwhile else ""
        self._since: float | None = None

    @property
    def down(self) -> bool:
        """Whether the last attempt failed."""
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        """An attempt failed: one warning when the store goes down, a debug line after that."""
        if self._since is None:
            self._since = time.monotonic()
            # An error of an unexpected kind is a bug somewhere: its traceback is worth logging.
            expected = isinstance(error, STORE_FAILURES) or closed_under_redis(error)
            self._log.warning(
                "%s down: %r%s",
                self.what,
                error,
                self._meanwhile,
                exc_info=None if expected else error,
            )
        else:
            self._log.debug("%s still down: %r", self.what, error)

    def succeeded(self) -> None:
        """An attempt worked: one line when the store is back."""
        if self._since is not None:
            self._log.warning("%s back up after %.1f s", self.what, time.monotonic() - self._since)
            self._since = None


def closed_under_redis(error: BaseException) -> bool:
    """Whether redis-py's asyncio client wrote on a connection another task had closed: it
    raises AttributeError or TypeError from its connection module then, not ConnectionError
    (redis/redis-py#4287, 8.1). A Redis Cluster client closes every connection while it reads
    the slot map again after a failover, so it is part of a failover, not a bug of c360's."""
    if not isinstance(error, AttributeError | TypeError):
        return False
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_globals.get("__name__") == "redis.asyncio.connection":
            return True
        frame = frame.tb_next
    return False


class UnavailableError(Exception):
    """A call the breaker skipped (open) or that failed; the failure is its cause."""


class Breaker:
    """Skips a store for `seconds` after it failed; the first call after that tries it again.

    For stores that are an optimisation (the Redis cache, shared rate-limit counts, persisted
    queries): whatever a call raises means "do without it for now", never a failed request.
    """

    def __init__(
        self,
        outage: Outage,
        seconds: float,
        *,
        redis: RedisClient | None = None,
    ) -> None:
        self.outage = outage
        self._seconds = seconds
        # The client whose idle sockets are dropped after a failed call: dead after an outage.
        self._redis = redis
        self._open_until = 0.0

    @property
    def open(self) -> bool:
        """Whether calls should skip the store now."""
        return time.monotonic() < self._open_until

    def failed(self, error: BaseException) -> None:
        """A call failed: skip the store for a while."""
        self._open_until = time.monotonic() + self._seconds
        self.outage.failed(error)

    def succeeded(self) -> None:
        """A call worked."""
        self.outage.succeeded()

    async def call(self, operation: Callable[[], Awaitable[T]], *, within: float) -> T:
        """`operation()`, given `within` seconds of the store's time (see Deadline); raises
        UnavailableError when the breaker is open or the call fails in any way."""
        if self.open:
            raise UnavailableError(f"{self.outage.what}: skipped for now")
        try:
            async with Deadline(within):
                result = await operation()
        except Exception as error:
            # Not only the expected failures: nothing an optional store raises may fail a
            # request (an unexpected kind is logged with its traceback, once, by Outage).
            self.failed(error)
            if self._redis is not None:
                await drop_idle_connections(self._redis)
            raise UnavailableError(repr(error)) from error
        self.succeeded()
        return result
