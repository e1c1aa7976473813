"""Retention: published outbox events and dead letters past their windows are pruned, on the
background task's schedule; unpublished events and anything within its window stay."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from sqlalchemy import insert, select

from api.connections import Connections
from sources.events.retention import Retention, Windows, prune
from sources.sql import models
from sources.sql.engine import begin_write

DAY = 86_400.0
WINDOWS = Windows(outbox_seconds=7 * DAY, dead_letters_seconds=30 * DAY)
OUTBOX = models.table(models.OutboxEvent)
DEAD = models.table(models.DeadLetter)


async def _outbox(connections: Connections, age_days: float, published: bool) -> str:
    """An outbox event in both stores, `age_days` old; its id."""
    event_id = f"retention-{uuid.uuid4()}"
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    async with begin_write(connections.engine) as connection:
        await connection.execute(
            insert(OUTBOX).values(
                event_id=event_id,
                type="customer.contact_changed",
                subject="1",
                payload={},
                created_at=at,
                published_at=at if published else None,
            )
        )
    await connections.db.outbox.insert_one(
        {"_id": event_id, "payload": {}, "created_at": at, "published": published}
    )
    return event_id


async def _dead_letter(connections: Connections, age_days: float) -> str:
    event_id = f"retention-dead-{uuid.uuid4()}"
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    async with begin_write(connections.engine) as connection:
        await connection.execute(
            insert(DEAD).values(event_id=event_id, received_at=at, reasons=["r"], payload={})
        )
    return event_id


async def _kept(connections: Connections, ids: list[str]) -> list[str]:
    async with connections.engine.connect() as connection:
        sql = {
            row[0]
            for row in await connection.execute(
                select(OUTBOX.c.event_id).where(OUTBOX.c.event_id.in_(ids))
            )
        } | {
            row[0]
            for row in await connection.execute(
                select(DEAD.c.event_id).where(DEAD.c.event_id.in_(ids))
            )
        }
    mongo = {doc["_id"] async for doc in connections.db.outbox.find({"_id": {"$in": ids}})}
    return [i for i in ids if i in sql or i in mongo]


async def test_what_is_past_its_window_is_pruned_and_nothing_else(
    connections: Connections,
) -> None:
    old_sent = await _outbox(connections, 8, published=True)
    recent_sent = await _outbox(connections, 6, published=True)
    old_unsent = await _outbox(connections, 8, published=False)  # never lost
    old_dead = await _dead_letter(connections, 31)
    recent_dead = await _dead_letter(connections, 29)
    ids = [old_sent, recent_sent, old_unsent, old_dead, recent_dead]
    gone = await prune(engine=connections.engine, db=connections.db, windows=WINDOWS)
    assert gone["sql_outbox"] >= 1 and gone["mongo_outbox"] >= 1 and gone["dead_letters"] >= 1
    assert await _kept(connections, ids) == [recent_sent, old_unsent, recent_dead]


async def test_the_task_prunes_on_its_schedule(connections: Connections) -> None:
    old = await _outbox(connections, 8, published=True)
    task = Retention(
        engine=connections.engine, db=connections.db, windows=WINDOWS, every_seconds=0.05
    )
    task.start()
    try:
        async with asyncio.timeout(10):
            while await _kept(connections, [old]):  # noqa: ASYNC110 - the stores, polled
                await asyncio.sleep(0.05)
    finally:
        await task.stop()
