"""Retention: published outbox events and dead letters past their windows are pruned, on the
background task's schedule; unpublished events and anything within its window stay.

On stores of the tests' own: an unpublished row left in the session's outbox would be the
session relay's to publish."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sources.events.envelope import new_event
from sources.events.outbox import add_to_mongo_outbox, in_mongo_outbox
from sources.events.retention import Retention, Windows, prune
from sources.mongo.queries import Database
from sources.sql import models
from sources.sql.engine import begin_write

DAY = 86_400.0
WINDOWS = Windows(outbox_seconds=7 * DAY, dead_letters_seconds=30 * DAY)
OUTBOX = models.table(models.OutboxEvent)
DEAD = models.table(models.DeadLetter)


@dataclass(frozen=True)
class Stores:
    engine: AsyncEngine
    db: Database


@pytest.fixture
def stores(own_sqlite: AsyncEngine, own_mongo: Database) -> Stores:
    """A migrated SQLite database and a MongoDB database of the test's own."""
    return Stores(own_sqlite, own_mongo)


async def _outbox(stores: Stores, age_days: float, published: bool) -> str:
    """An outbox event in both stores, `age_days` old; its id."""
    event = new_event("customer.contact_changed", "1", {"email": "a@x.io"})
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    async with begin_write(stores.engine) as connection:
        await connection.execute(
            insert(OUTBOX).values(
                event_id=event.id,
                type=event.type,
                subject=event.subject,
                payload=event.to_json(),
                created_at=at,
                published_at=at if published else None,
            )
        )
    await stores.db.outbox.insert_one(
        {"_id": event.id, "payload": event.to_json(), "created_at": at, "published": published}
    )
    return event.id


async def _dead_letter(stores: Stores, age_days: float) -> str:
    event_id = f"retention-dead-{uuid.uuid4()}"
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    async with begin_write(stores.engine) as connection:
        await connection.execute(
            insert(DEAD).values(event_id=event_id, received_at=at, reasons=["r"], payload={})
        )
    return event_id


async def _kept(stores: Stores, ids: list[str]) -> list[str]:
    async with stores.engine.connect() as connection:
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
    mongo = {doc["_id"] async for doc in stores.db.outbox.find({"_id": {"$in": ids}})}
    return [i for i in ids if i in sql or i in mongo]


async def test_what_is_past_its_window_is_pruned_and_nothing_else(stores: Stores) -> None:
    old_sent = await _outbox(stores, 8, published=True)
    recent_sent = await _outbox(stores, 6, published=True)
    old_unsent = await _outbox(stores, 7.5, published=False)  # never lost
    old_dead = await _dead_letter(stores, 31)
    recent_dead = await _dead_letter(stores, 29)
    ids = [old_sent, recent_sent, old_unsent, old_dead, recent_dead]
    gone = await prune(engine=stores.engine, db=stores.db, windows=WINDOWS)
    assert gone == {"sql_outbox": 1, "dead_letters": 1, "mongo_outbox": 1}
    assert await _kept(stores, ids) == [recent_sent, old_unsent, recent_dead]


async def test_a_groups_event_ids_outlast_its_unpublished_events(stores: Stores) -> None:
    """A group's ids are written apart from its events, already published: past the window,
    they stay while the events wait for the relay, or the events could be applied again."""
    db = stores.db
    older_sent = await _outbox(stores, 9, published=True)
    group = [new_event("interaction.recorded", "1", {"n": n}) for n in range(3)]
    async with db.client.start_session() as session:

        async def write(session: object) -> None:
            await add_to_mongo_outbox(db=db, session=session, events=group)

        await session.with_transaction(write)
    eight_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    await db.outbox.update_many(
        {"_id": {"$regex": "^group:"}}, {"$set": {"created_at": eight_days_ago}}
    )
    ids = [e.id for e in group]

    gone = await prune(engine=stores.engine, db=db, windows=WINDOWS)
    # Only what was written before the oldest pending event.
    assert gone["mongo_outbox"] == 1
    assert await _kept(stores, [older_sent]) == []
    assert await in_mongo_outbox(db=db, event_ids=ids) == set(ids)

    await db.outbox.update_many({"published": False}, {"$set": {"published": True}})
    gone = await prune(engine=stores.engine, db=db, windows=WINDOWS)
    # Published, the group's documents go, its ids with them.
    assert gone["mongo_outbox"] == 2
    assert await in_mongo_outbox(db=db, event_ids=ids) == set()


async def test_the_task_prunes_on_its_schedule(stores: Stores) -> None:
    old = await _outbox(stores, 8, published=True)
    task = Retention(engine=stores.engine, db=stores.db, windows=WINDOWS, every_seconds=0.05)
    task.start()
    try:
        async with asyncio.timeout(10):
            while await _kept(stores, [old]):  # noqa: ASYNC110 - the stores, polled
                await asyncio.sleep(0.05)
    finally:
        await task.stop()
