"""SQLite connections whose calls run on the event loop's own thread, for the loaders' reads.

aiosqlite runs every call of a connection (cursor, execute, fetch, close, rollback: five for
one loader batch) on a thread of the connection's own and hands each result back through the
event loop. On the bench machine one batch of three customers, one after another on an idle
loop, took 1.2 to 1.3 ms that way and 0.4 to 0.5 ms inline, where SQLite itself spends tens
of microseconds; under load each hand-over also waits for the GIL the loop's thread holds (up
to the interpreter's 5 ms switch interval). `orders-page` (four reads a request) served
about 165 requests/s through aiosqlite and 290 inline.

A read of the loaders is a lookup in a B-tree of a file on this machine: tens of
microseconds, less than one hand-over. So the loaders' engine (`create_engine(...,
reads=True)`) makes its connections here, and each call runs where it is made. What that
trades: a read holds the loop for its duration, so a slow one (a search over a large table)
delays the other requests as long, where on a thread it would overlap them; and a read that
had to wait for a lock would wait on the loop. In WAL mode (`sources.sql.engine`) readers do
not wait for writers, and these connections are `query_only`, so nothing here takes the
write lock; their busy timeout is short all the same (`READ_BUSY_SECONDS`), and a call is
interrupted past the SQL source's timeout, which on the loop `asyncio.timeout` cannot do.
Writes stay on aiosqlite's thread: a commit may wait for another process's write lock (the
busy timeout) or for the disk. PostgreSQL is unaffected: asyncpg has no thread.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import URL

# SQLite calls the progress handler every this many virtual machine steps: tens of
# microseconds apart, so a call stops soon after its limit, and a lookup never calls it.
PROGRESS_STEPS = 10_000


class _Inline:
    """Stands in for aiosqlite's queue to its thread: what is put in runs at once. SQLAlchemy
    puts calls there itself (its `isolation_level` setter)."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as error:  # handed over as the thread would hand it over
            if future is not None:
                future.set_exception(error)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection, its calls run inline: no thread is started. A call running
    past `limit` seconds is interrupted and raises TimeoutError: on the loop, the source
    timeout's `asyncio.timeout` cannot end it."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], *, limit: float) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _Inline()  # type: ignore[assignment]
        self._limit = limit
        self._deadline = math.inf

    def _past_deadline(self) -> bool:
        return time.monotonic() > self._deadline  # true: SQLite ends the statement

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        self._deadline = time.monotonic() + self._limit
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as error:
            if "interrupted" in str(error) and time.monotonic() > self._deadline:
                raise TimeoutError(f"an SQLite read ran past {self._limit:g} s") from error
            raise
        finally:
            self._deadline = math.inf

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            connection = self._connector()
            connection.set_progress_handler(self._past_deadline, PROGRESS_STEPS)
            self._connection = connection
        return self

    def __await__(self) -> Any:
        return self._connect().__await__()

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def inline_creator(
    url: URL, *, timeout: float, limit: float = math.inf
) -> Callable[[], Awaitable[InlineConnection]]:
    """`create_async_engine`'s `async_creator` for the SQLite database of `url`, connecting as
    SQLAlchemy's aiosqlite dialect would (its arguments, and the busy `timeout`); each call
    is interrupted past `limit` seconds."""
    [database], kwargs = SQLiteDialect_aiosqlite().create_connect_args(url)
    options: dict[str, Any] = {**kwargs, "timeout": timeout}

    def connect() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(database, **options)
        return connection

    async def create() -> InlineConnection:
        return await InlineConnection(connect, limit=limit)  # type: ignore[no-any-return]

    return create
