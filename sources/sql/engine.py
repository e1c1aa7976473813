"""The async SQLAlchemy engine, with its round-trip counter hook, and the write turn that
SQLite's writers take (`begin_write`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import weakref
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)

from sources import tracing
from sources.roundtrips import RoundTrips
from sources.sql.inline_sqlite import inline_creator
from sources.sql.source import SQL

log = logging.getLogger(__name__)

# The driver's own errors of a connection lost while it is being set up: SQLAlchemy does not
# wrap what its connect hooks raise (asyncpg's "connection is closed" from a backend
# terminated before the first statement).
DRIVER_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
)
# Everything a statement or a connection of the engine may raise when the database fails.
SQL_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,
    *DRIVER_CONNECTION_ERRORS,
)


def create_engine(
    url: str | URL,
    *,
    round_trips: RoundTrips | None = None,
    reads: bool = False,
    statement_seconds: float = math.inf,
    pool_size: int = 20,
    max_overflow: int = 10,
) -> AsyncEngine:
    """An engine for SQLite (aiosqlite) or PostgreSQL (asyncpg), counting each statement.

    `reads`: an engine for the loaders' batches. On PostgreSQL, in autocommit: in a
    transaction a batch cost six round trips: the pool's pre-ping (BEGIN, `;`, ROLLBACK, as
    SQLAlchemy pings asyncpg outside autocommit), then BEGIN, the query and the ROLLBACK of the
    return to the pool; in autocommit it costs two (`;` and the query). Nothing is lost:
    PostgreSQL's READ COMMITTED takes a snapshot per statement, inside a transaction or not.
    On SQLite, read only, each call made on the event loop's thread
    (`sources.sql.inline_sqlite`, which says why) and interrupted past `statement_seconds`.
    """
    url = make_url(url)
    # Enough pooled connections for the batches of many concurrent requests: a connection
    # opened beyond the pool is closed after one use, and opening one costs more than a query.
    kwargs: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        # A failed statement's error message leaves out its parameters: they carry emails and
        # phone numbers, and error messages are logged.
        "hide_parameters": True,
    }
    if url.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        if reads:
            kwargs["isolation_level"] = "AUTOCOMMIT"
    elif reads:
        kwargs["async_creator"] = inline_creator(
            url, timeout=READ_BUSY_SECONDS, limit=statement_seconds
        )
    else:
        # This process's writers take turns (`one_writer`); the busy timeout is for another
        # process's (a CLI command, a second worker), whose transactions are as short.
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_SECONDS}
    engine = create_async_engine(url, **kwargs)
    sync_engine = engine.sync_engine

    if url.get_backend_name() == "sqlite":

        @event.listens_for(sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run while the seeder or a mutation writes.
            cursor = dbapi_connection.cursor()
            if reads:
                # On the event loop's thread: never a writer, which could wait for the lock
                # there (switching a new file to WAL is a write too: the writers do it).
                cursor.execute("PRAGMA query_only=ON")
                cursor.execute("PRAGMA journal_mode")
                [mode] = cursor.fetchone()
                if mode != "wal":
                    log.warning(
                        "SQLite file not in WAL mode (%s): the loaders' reads may wait for "
                        "writers, on the event loop, up to %g s",
                        mode,
                        READ_BUSY_SECONDS,
                    )
            else:
                try:
                    cursor.execute("PRAGMA journal_mode=WAL")
                except sqlite3.OperationalError as error:
                    # A new file another connection is switching (or writing) at this moment:
                    # the mode is the file's, so that connection's switch, or the next one's,
                    # sets it.
                    log.debug("SQLite WAL not switched on by this connection: %s", error)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    if round_trips is not None:

        @event.listens_for(sync_engine, "before_cursor_execute")
        def _count(*_args: Any) -> None:
            round_trips.record(SQL.name)

    if tracing.TRACER is not None:  # on for the app's lifetime: made after tracing started
        _trace_statements(sync_engine, url.get_backend_name())
    return engine


def _trace_statements(sync_engine: Engine, system: str) -> None:
    """A span per statement: its operation, and its text (placeholders, no values)."""

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _start(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        started = tracing.client_span(
            f"sql {operation}",
            {
                "db.system.name": system,
                "db.operation.name": operation,
                "db.query.text": statement[:_MAX_STATEMENT],
            },
        )
        if started is not None and context is not None:
            context.c360_span = started

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _end(
        _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        started = getattr(context, "c360_span", None)
        if started is not None:
            context.c360_span = None
            tracing.ended(started)

    @event.listens_for(sync_engine, "handle_error")
    def _failed(failure: Any) -> None:
        started = getattr(failure.execution_context, "c360_span", None)
        if started is not None:
            failure.execution_context.c360_span = None
            tracing.ended(started, type(failure.original_exception).__name__)


# A statement's text in its span, at most (an IN list of a big batch runs long).
_MAX_STATEMENT = 2000


SQLITE_BUSY_SECONDS = 30.0
# The loaders' reads, on the event loop's thread, wait this long at most for a lock (in WAL
# mode they wait for none but in rare moments of the log's own upkeep).
READ_BUSY_SECONDS = 0.25
# The turns of each event loop, by database: engines differ (the relay and the audit log have
# their own) where the database, and SQLite's one writer, is the same.
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_holding: ContextVar[tuple[str, ...]] = ContextVar("c360_sql_write_turns", default=())


@contextlib.asynccontextmanager
async def one_writer(
    engine: AsyncEngine, *, wait: float = SQLITE_BUSY_SECONDS
) -> AsyncIterator[None]:
    """The database's write turn while the block runs: on SQLite, one write transaction of
    this process at a time, whichever engine it goes through, queued in order on the event
    loop; nothing on PostgreSQL, whose row locks let writers run side by side.

    SQLite has one writer per database, and a writer waiting for it polls in the driver's
    thread: under load, with the audit flush, the outbox relay and other changes taking the
    lock in between, a change waited past the busy timeout and failed with "database is
    locked" (a third of agent360-churn's changes did).

    A turn not given within `wait` seconds (SQLite's own busy timeout) fails as SQLite would,
    with "database is locked", which callers report as the store unavailable: a writer that
    hangs holding the turn must not hold every other write of the process for ever.
    """
    url = engine.sync_engine.url
    if url.get_backend_name() != "sqlite":
        yield
        return
    database = url.database or ":memory:"
    if database in _holding.get():
        # It would wait for the turn its own caller holds.
        raise RuntimeError("a write transaction inside another on the same SQLite database")
    turns = _turns.setdefault(asyncio.get_running_loop(), {})
    turn = turns.get(database)
    if turn is None:
        turn = turns[database] = asyncio.Lock()
    try:
        async with asyncio.timeout(wait):
            await turn.acquire()
    except TimeoutError:
        locked = sqlite3.OperationalError(f"database is locked: no write turn within {wait:g} s")
        raise OperationalError("(waiting for the write turn)", None, locked) from None
    token = _holding.set((*_holding.get(), database))
    try:
        yield
    finally:
        try:
            _holding.reset(token)
        finally:
            # Whatever happens to the context (closed from another one, say), the turn is
            # given back: a turn kept would fail every later write of the process.
            turn.release()


@contextlib.asynccontextmanager
async def begin_write(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """`engine.begin()` for a transaction that writes: it takes the write turn first."""
    async with one_writer(engine), engine.begin() as connection:
        yield connection
