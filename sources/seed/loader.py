"""Write a generated dataset into the stores, chunk by chunk, with a progress bar."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pymongo
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from tqdm import tqdm

from sources.mongo.queries import Database, ensure_indexes
from sources.seed.generator import Chunk, Generator, Row
from sources.sql import models
from sources.sql.engine import begin_write
from sources.sql.search import Searchable, term_rows
from sources.thirdparty.simulator import VendorStore

CHUNK = 250
SQL_BATCH = 5000
INDEX_BUILD_SECONDS = 3600


async def customer_count(engine: AsyncEngine) -> int:
    """How many customers the SQL store holds (the seeder skips a non-empty store)."""
    async with engine.connect() as connection:
        return int(
            (
                await connection.execute(select(func.count()).select_from(models.Customer))
            ).scalar_one()
        )


async def _insert_sql(engine: AsyncEngine, table: Any, rows: Sequence[Row]) -> None:
    async with begin_write(engine) as connection:
        for start in range(0, len(rows), SQL_BATCH):
            await connection.execute(insert(table), list(rows[start : start + SQL_BATCH]))


async def _write_sql(engine: AsyncEngine, chunk: Chunk) -> None:
    # Parents before children, for the foreign keys.
    await _insert_sql(engine, models.Customer.__table__, chunk.customers)
    terms = term_rows(Searchable.of(customer) for customer in chunk.customers)
    await _insert_sql(engine, models.CustomerSearchTerm.__table__, terms)
    await _insert_sql(engine, models.Address.__table__, chunk.addresses)
    await _insert_sql(engine, models.Order.__table__, chunk.orders)
    await _insert_sql(engine, models.OrderLine.__table__, chunk.order_lines)


async def _write_mongo(db: Database, chunk: Chunk) -> None:
    for name, docs in (
        ("profiles", chunk.profiles),
        ("interactions", chunk.interactions),
        ("tickets", chunk.tickets),
    ):
        if docs:
            await db[name].insert_many(docs, ordered=False)


async def seed(
    *,
    engine: AsyncEngine,
    db: Database,
    vendors: VendorStore | None,
    customers: int,
    seed: int = 360,
    progress: bool = True,
) -> dict[str, int]:
    """Load `customers` generated customers and all their data; returns counts per target.

    SQL and MongoDB writes of one chunk run concurrently, while the next chunk is generated.
    `vendors` is the simulator's store, or None when real vendor APIs are configured.
    """
    generator = Generator(seed)
    await _insert_sql(engine, models.Product.__table__, generator.products)
    counts = {
        "customers": 0,
        "orders": 0,
        "order_lines": 0,
        "interactions": 0,
        "tickets": 0,
        "profiles": 0,
        "loyalty_members": 0,
        "shipments": 0,
        "products": len(generator.products),
    }
    pending: asyncio.Future[Any] | None = None
    with tqdm(total=customers, unit="customer", disable=not progress, desc="seeding") as bar:
        for first in range(1, customers + 1, CHUNK):
            # Generated in a thread: the event loop meanwhile keeps the writes of the chunk
            # before moving (the embedded MongoDB is the bottleneck, and waited on the loop).
            chunk = await asyncio.to_thread(
                generator.chunk, first, min(CHUNK, customers - first + 1)
            )
            if pending is not None:
                await pending
            pending = asyncio.gather(_write_sql(engine, chunk), _write_mongo(db, chunk))
            if vendors is not None:
                vendors.put("members", ((m["customerId"], m) for m in chunk.members))
                vendors.put("shipments", ((s["trackingNumber"], s) for s in chunk.shipments))
                counts["loyalty_members"] += len(chunk.members)
                counts["shipments"] += len(chunk.shipments)
            for name in (
                "customers",
                "orders",
                "order_lines",
                "interactions",
                "tickets",
                "profiles",
            ):
                counts[name] += len(getattr(chunk, name))
            bar.update(len(chunk.customers))
        if pending is not None:
            await pending
    # Building indexes once over the loaded data is much faster than maintaining them per insert.
    # One build can take longer than the client's socket timeout (minutes at 100,000 customers
    # on the embedded server), so the builds get a deadline of their own.
    with pymongo.timeout(INDEX_BUILD_SECONDS):
        await ensure_indexes(db=db)
    return counts
