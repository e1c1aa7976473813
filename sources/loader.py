"""The one by-key DataLoader factory every source uses, with its timeout and error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from typing import Any, TypeVar

import aiohttp
from pymongo.errors import AutoReconnect, ConnectionFailure, ExecutionTimeout, NetworkTimeout
from sqlalchemy.exc import DBAPIError, InterfaceError

from sources import tracing
from sources.cache.entity import EntityCache
from sources.dataloader import DataLoader
from sources.errors import SourceError, SourceTimeoutError, SourceUnavailableError
from sources.sql.engine import DRIVER_CONNECTION_ERRORS

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger(__name__)

BatchFn = Callable[[Sequence[K]], Awaitable[Sequence[V | None]]]

# What each driver raises when its server is down, refuses or drops the connection.
_TIMEOUTS: tuple[type[BaseException], ...] = (
    TimeoutError,
    NetworkTimeout,
    ExecutionTimeout,
)
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionFailure,
    AutoReconnect,
    aiohttp.ClientError,  # unreachable, dropped, or a status of 400 and above
    InterfaceError,
    OSError,
    *DRIVER_CONNECTION_ERRORS,
)


def source_error(source: str, error: BaseException) -> SourceError | None:
    """The SourceError for a driver failure, or None when it is not an outage (a bug)."""
    if isinstance(error, SourceError):
        return error
    if isinstance(error, _TIMEOUTS):
        return SourceTimeoutError(source, repr(error))
    if isinstance(error, _UNAVAILABLE):
        return SourceUnavailableError(source, repr(error))
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return SourceUnavailableError(source, repr(error))
    if isinstance(error, DBAPIError) and isinstance(error.orig, OSError | ConnectionError):
        return SourceUnavailableError(source, repr(error))
    if isinstance(error, DBAPIError) and isinstance(
        getattr(error.orig, "__cause__", None), DRIVER_CONNECTION_ERRORS
    ):
        # A connection the server ended (pg_terminate_backend, a restart) while SQLAlchemy
        # checked it out: not marked invalidated, but the driver's own error says what it is.
        return SourceUnavailableError(source, repr(error))
    if isinstance(error, DBAPIError) and _sqlite_busy(error.orig):
        # Another writer held SQLite's one write lock (or this process's write turn) past
        # the busy timeout: the store is unavailable for now, as a server that is down is.
        return SourceUnavailableError(source, repr(error))
    return None


def _sqlite_busy(error: BaseException | None) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "database is locked" in str(error)


@contextlib.contextmanager
def outages_as_source_errors(
    source: str, doing: str, kinds: tuple[type[BaseException], ...] = (Exception,)
) -> Iterator[None]:
    """Raise a lost, unreachable or slow store within as its coded SourceError (logged as
    `doing` failed); any other error, a bug, as it is."""
    try:
        yield
    except kinds as error:
        mapped = source_error(source, error)
        if mapped is None:
            raise
        log.warning("%s failed: %s is unavailable: %s", doing, source, mapped.detail)
        raise mapped from error


async def call_source(source: str, limit: float, call: Awaitable[V]) -> V:
    """Await one source call within `limit` seconds, turning outages into SourceError."""
    with outages_as_source_errors(source, "a read"):
        async with asyncio.timeout(limit):
            return await call


def keyed_loader(
    source: str,
    timeout: float,
    batch: BatchFn[K, V],
    *,
    cache: EntityCache | None = None,
    name: str = "",
    tagged: bool = False,
) -> DataLoader[K, Any]:
    """A per-request loader: one batched source call per tick, `None` for missing keys.

    With a cache, the batch reads through it (`name` names the loader in cache keys); a value
    may then come back as `Stale` (see `sources.cache.entity`), and a batch the in-process
    cache holds whole is answered at once. A failed batch fails each of
    its keys with its own error instance, so the error lands on every field that asked and
    nowhere else.
    """

    async def fetch(keys: Sequence[K]) -> list[V | None]:
        tracing.note(tracing.FETCHED, len(keys))
        values = await call_source(source, timeout, batch(keys))
        if len(values) != len(keys):
            raise RuntimeError(f"{source} batch returned {len(values)} values for {len(keys)} keys")
        return list(values)

    if cache is not None:
        fresh: dict[K, float] = {}
        return DataLoader(
            tracing.traced_batch(
                source, name, cache.read_through(source, name, fetch, tagged=tagged, fresh=fresh)
            ),
            peek=cache.peek(source, name, fresh),
            origin=(source, name, tagged),
            fresh=fresh,
        )

    async def load(keys: Sequence[K]) -> list[Any]:
        try:
            return await fetch(keys)
        except SourceError as error:
            return [type(error)(error.source, error.detail) for _ in keys]

    return DataLoader(tracing.traced_batch(source, name, load))
