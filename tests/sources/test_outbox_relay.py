"""The outbox relay passes over an item that is not an event (logged), so the events behind
it are still published: one bad row must not stop them all, on every pass, for good."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.connections import Connections
from sources.events.bus import InProcessBus
from sources.events.envelope import new_event
from sources.events.outbox import relay_mongo, relay_sql
from sources.sql import models
from sources.sql.engine import begin_write

OUTBOX = models.table(models.OutboxEvent)


async def test_a_row_that_is_not_an_event_does_not_stop_the_sql_relay(
    own_sqlite: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    good = new_event("customer.contact_changed", "1", {"email": "a@x.io"})
    now = dt.datetime.now(dt.UTC)
    async with begin_write(own_sqlite) as connection:
        for event_id, payload in (("not-an-event", {}), (good.id, good.to_json())):
            await connection.execute(
                insert(OUTBOX).values(
                    event_id=event_id, type="t", subject="1", payload=payload, created_at=now
                )
            )
    bus = InProcessBus(max_length=100, retention_seconds=60)
    with caplog.at_level(logging.ERROR):
        assert await relay_sql(engine=own_sqlite, bus=bus) == 2
    assert [d.event.id for d in await bus.read("0", count=10, block=0)] == [good.id]
    assert "not an event" in caplog.text
    async with own_sqlite.connect() as connection:
        unpublished = await connection.execute(
            select(OUTBOX.c.id).where(OUTBOX.c.published_at.is_(None))
        )
        assert unpublished.all() == []


async def test_a_document_that_is_not_an_event_does_not_stop_the_mongo_relay(
    connections: Connections,
) -> None:
    name = f"c360_relay_{uuid.uuid4().hex[:12]}"
    db = connections.mongo[name]
    try:
        good = new_event("customer.contact_changed", "1", {"email": "a@x.io"})
        now = dt.datetime.now(dt.UTC)
        await db.outbox.insert_many(
            [
                {"_id": "no-payload", "created_at": now, "published": False},
                {"_id": good.id, "payload": good.to_json(), "created_at": now, "published": False},
            ]
        )
        bus = InProcessBus(max_length=100, retention_seconds=60)
        assert await relay_mongo(db=db, bus=bus) == 2
        assert [d.event.id for d in await bus.read("0", count=10, block=0)] == [good.id]
        assert await db.outbox.count_documents({"published": False}) == 0
    finally:
        await connections.mongo.drop_database(name)
