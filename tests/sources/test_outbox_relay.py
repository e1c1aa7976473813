"""The outbox relay: it passes over an item that is not an event (logged), so the events behind
it are still published (one bad row must not stop them all, on every pass, for good), and it
publishes grouped MongoDB documents event by event, in the order they were written."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.connections import Connections
from sources.events.bus import InProcessBus
from sources.events.envelope import Event, new_event
from sources.events.outbox import (
    BATCH,
    Relay,
    add_to_mongo_outbox,
    in_mongo_outbox,
    outbox_ids_unique,
    relay_mongo,
    relay_sql,
)
from sources.mongo.queries import Database, ensure_indexes
from sources.sql import models
from sources.sql.engine import begin_write
from tests.waits import relay_idle, until

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
    own_mongo: Database,
) -> None:
    db = own_mongo
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


async def test_grouped_documents_are_relayed_in_order_about_a_batch_a_pass(
    connections: Connections, own_mongo: Database
) -> None:
    db = own_mongo
    # A document written before documents listed their event ids (and before the index).
    legacy = new_event("customer.contact_changed", "1", {"email": "old@x.io"})
    await db.outbox.insert_one(
        {
            "_id": legacy.id,
            "payload": legacy.to_json(),
            "created_at": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
            "published": False,
        }
    )
    await ensure_indexes(db=db)
    assert await outbox_ids_unique(db=db)
    # Backfilled: the events' own times are a month old, which must not order the relay.
    month_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    group = [
        dataclasses.replace(new_event("interaction.recorded", str(n % 7), {"n": n}), time=month_ago)
        for n in range(250)
    ]
    async with connections.mongo.start_session() as session:

        async def write(session: object) -> None:
            await add_to_mongo_outbox(db=db, session=session, events=group)

        await session.with_transaction(write)
    # The events in documents of up to a hundred; their ids in one more, written published
    # (the relay's mark then rewrites no index entry per id).
    assert await db.outbox.count_documents({"payloads": {"$exists": True}}) == 3
    [ids] = await db.outbox.find({"event_ids": {"$exists": True}}).to_list(None)
    assert ids["published"] is True and "payloads" not in ids
    assert ids["event_ids"] == [e.id for e in group]
    assert await in_mongo_outbox(db=db, event_ids=[legacy.id, group[0].id, "x"]) == {
        legacy.id,
        group[0].id,
    }

    bus = InProcessBus(max_length=1000, retention_seconds=60)
    # Whole documents, at most BATCH events a pass: the legacy one and the first hundred.
    first = await relay_mongo(db=db, bus=bus)
    assert first == 101 <= BATCH
    assert await relay_mongo(db=db, bus=bus) == 150
    assert await relay_mongo(db=db, bus=bus) == 0
    published = [d.event.id for d in await bus.read("0", count=1000, block=0)]
    assert published == [legacy.id] + [e.id for e in group]


async def _pending(engine: AsyncEngine, email: str) -> Event:
    """An event left in the SQL outbox, unpublished, with no relay woken for it."""
    event = new_event("customer.contact_changed", "1", {"email": email})
    async with begin_write(engine) as connection:
        await connection.execute(
            insert(OUTBOX).values(
                event_id=event.id,
                type=event.type,
                subject="1",
                payload=event.to_json(),
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    return event


async def test_a_stopping_relay_publishes_what_is_pending_once_more(
    own_sqlite: AsyncEngine, own_mongo: Database
) -> None:
    bus = InProcessBus(max_length=100, retention_seconds=60)
    relay = Relay(engine=own_sqlite, db=own_mongo, bus=bus, poll_seconds=60)
    relay.start()
    # Past its first pass, waiting a minute for the next.
    await until(lambda: relay_idle(relay), "the relay to wait for work", 10)
    # Written without waking the relay, as another process's write or one committed just as
    # the shutdown began: the next poll is a minute away.
    late = await _pending(own_sqlite, "late@x.io")
    async with asyncio.timeout(10):
        await relay.stop()
    assert [d.event.id for d in await bus.read("0", count=10, block=0)] == [late.id]


async def test_a_relay_never_started_publishes_nothing_when_stopped(
    own_sqlite: AsyncEngine, own_mongo: Database
) -> None:
    await _pending(own_sqlite, "kept@x.io")
    bus = InProcessBus(max_length=100, retention_seconds=60)
    # An instance with C360_RELAY_ENABLED=false leaves publishing to the relaying ones.
    await Relay(engine=own_sqlite, db=own_mongo, bus=bus, poll_seconds=60).stop()
    assert await bus.read("0", count=10, block=0) == []


class _HeldBus(InProcessBus):
    """An in-process bus whose publish waits until the test lets it go on: a relay pass held
    between its publish and its mark."""

    def __init__(self) -> None:
        super().__init__(max_length=100, retention_seconds=60)
        self.publishing = asyncio.Event()
        self.go_on = asyncio.Event()

    async def publish(self, events: Sequence[Event]) -> list[str]:
        positions = await super().publish(events)
        self.publishing.set()
        await self.go_on.wait()
        return positions


async def test_a_stop_lets_the_pass_under_way_finish_so_nothing_is_published_twice(
    own_sqlite: AsyncEngine, own_mongo: Database
) -> None:
    """Cancelled between its publish and its mark, a pass left its rows published but
    unmarked, and the stop's last pass (or the next relay) published them again: a
    subscriber resuming on another instance received them twice."""
    bus = _HeldBus()
    relay = Relay(engine=own_sqlite, db=own_mongo, bus=bus, poll_seconds=60)
    event = await _pending(own_sqlite, "once@x.io")
    relay.start()
    async with asyncio.timeout(10):
        await bus.publishing.wait()  # published, not yet marked
    stopping = asyncio.create_task(relay.stop())
    await asyncio.sleep(0)  # the stop runs to its first wait (it must not cancel the pass)
    bus.go_on.set()
    async with asyncio.timeout(10):
        await stopping
    assert [d.event.id for d in await bus.read("0", count=10, block=0)] == [event.id]
    async with own_sqlite.connect() as connection:
        unpublished = await connection.execute(
            select(OUTBOX.c.id).where(OUTBOX.c.published_at.is_(None))
        )
        assert unpublished.all() == []


async def test_a_relay_stopped_and_started_again_publishes(
    own_sqlite: AsyncEngine, own_mongo: Database
) -> None:
    bus = InProcessBus(max_length=100, retention_seconds=60)
    relay = Relay(engine=own_sqlite, db=own_mongo, bus=bus, poll_seconds=60)
    relay.start()
    async with asyncio.timeout(10):
        await relay.stop()
    relay.start()
    event = await _pending(own_sqlite, "again@x.io")
    relay.wake()
    try:
        await until(lambda: relay.published == 1, "the restarted relay to publish", 10)
    finally:
        async with asyncio.timeout(10):
            await relay.stop()
    assert [d.event.id for d in await bus.read("0", count=10, block=0)] == [event.id]
