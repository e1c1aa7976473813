"""The loaders' reads: on PostgreSQL a batch is its query, with no transaction around it; on
SQLite, an engine of their own."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from api.connections import Connections
from api.context import create_loaders
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer


async def test_a_loader_batch_sends_its_query_and_the_pool_s_ping_alone(
    connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store, orders=1)
    if connections.engine.dialect.name != "postgresql":
        # SQLite's BEGIN is a call into the library, not a round trip; the loaders' engine is
        # apart for another reason: it reads on the event loop's thread (test_sqlite_engine).
        assert connections.reads is not connections.engine
        assert (await create_loaders(connections).sql.customer_by_id.load(cid)) is not None
        return
    # asyncpg logs what it sends outside prepared statements: BEGIN, ROLLBACK, the ping.
    simple: list[str] = []
    queries: list[str] = []

    def connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection._connection.add_query_logger(lambda record: simple.append(record.query))

    def executed(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        queries.append(statement)

    reads = connections.reads
    await reads.dispose()  # every connection from here on is a new one, with the logger on
    event.listen(reads.sync_engine, "connect", connected)
    event.listen(reads.sync_engine, "before_cursor_execute", executed)
    try:
        for _ in range(2):  # the second batch takes the pooled connection: pinged first
            assert (await create_loaders(connections).sql.customer_by_id.load(cid)) is not None
        await asyncio.sleep(0)  # asyncpg calls its query loggers from the loop
    finally:
        event.remove(reads.sync_engine, "connect", connected)
        event.remove(reads.sync_engine, "before_cursor_execute", executed)
        await reads.dispose()
    assert len(queries) == 2 and all("FROM customers" in q for q in queries), queries
    # In a transaction it was BEGIN, ROLLBACK around each query, and BEGIN, ;, ROLLBACK as
    # the ping.
    assert [q.strip() for q in simple] == [";"]
