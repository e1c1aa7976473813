"""The async SQLAlchemy engine, with its round-trip counter hook."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    create_async_engine,
)

from sources.roundtrips import SQL, RoundTrips

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
    pool_size: int = 20,
    max_overflow: int = 10,
) -> AsyncEngine:
    """An engine for SQLite (aiosqlite) or PostgreSQL (asyncpg), counting each statement.

    `reads`: an engine for the loaders' batches on PostgreSQL, in autocommit. In a transaction
    a batch cost six round trips: the pool's pre-ping (BEGIN, `;`, ROLLBACK, as SQLAlchemy
    pings asyncpg outside autocommit), then BEGIN, the query and the ROLLBACK of the return to
    the pool; in autocommit it costs two (`;` and the query). Nothing is lost: PostgreSQL's
    READ COMMITTED takes a snapshot per statement, inside a transaction or not.
    """
    url = make_url(url)
    # Enough pooled connections for the batches of many concurrent requests: a connection
    # opened beyond the pool is closed after one use, and opening one costs more than a query.
    kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": max_overflow}
    if url.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        if reads:
            kwargs["isolation_level"] = "AUTOCOMMIT"
    engine = create_async_engine(url, **kwargs)
    sync_engine = engine.sync_engine

    if url.get_backend_name() == "sqlite":

        @event.listens_for(sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run while the seeder or a mutation writes.
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as error:
                # A new file another connection is switching (or writing) at this moment: the
                # mode is the file's, so that connection's switch, or the next one's, sets it.
                log.debug("SQLite WAL not switched on by this connection: %s", error)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    if round_trips is not None:

        @event.listens_for(sync_engine, "before_cursor_execute")
        def _count(*_args: Any) -> None:
            round_trips.record(SQL)

    return engine
