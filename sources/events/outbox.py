"""The transactional outbox: a change and its event are written in one transaction, and a
relay publishes what was written to the bus.

Killing the process between the commit and the publication loses nothing: the row is still
unpublished and the next relay pass (on restart, or in another instance) publishes it. A
crash after publishing but before marking the row publishes it twice, which is why delivery
is at-least-once and consumers are idempotent on the event id.

SQL changes use the `outbox` table; MongoDB changes use an `outbox` collection written in the
same MongoDB transaction as the change (a replica set, as production MongoDB is, and as the
embedded server is).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from pymongo.errors import PyMongoError
from sqlalchemy import Text, cast, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sources import tracing
from sources.events.bus import EventBus
from sources.events.envelope import Event
from sources.mongo.queries import Database
from sources.outage import Outage, stopping
from sources.sql import models
from sources.sql.engine import begin_write

log = logging.getLogger(__name__)

BATCH = 200
# Events in one grouped MongoDB outbox document, at most: the relay publishes about BATCH events
# a pass, and one document is never split between passes.
GROUP_EVENTS = 100
# Outbox documents the relay reads per round trip.
RELAY_READ = 16
# How long a stopping relay may spend publishing what is still pending.
LAST_PASS_SECONDS = 5.0


# Where `add_to_sql_outbox` leaves PostgreSQL's id of the transaction it wrote in (in the
# connection's `info`), read back by the change that commits it (`domain.changes`).
TRANSACTION_ID = "c360.transaction_id"


async def add_to_sql_outbox(*, connection: AsyncConnection, events: Sequence[Event]) -> None:
    """Queue events for publication, inside the caller's transaction."""
    if not events:
        return
    statement = insert(models.table(models.OutboxEvent))
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        # The id to ask after when the COMMIT's answer is lost, in a statement the change
        # sends anyway rather than a round trip of its own.
        statement = statement.returning(cast(func.pg_current_xact_id(), Text))
    written = await connection.execute(
        statement,
        [
            {
                "event_id": e.id,
                "type": e.type,
                "subject": e.subject,
                "payload": e.to_json(),
                "created_at": e.time,
                "published_at": None,
            }
            for e in events
        ],
    )
    if postgresql:
        connection.info[TRANSACTION_ID] = written.scalars().first()


async def in_sql_outbox(*, connection: AsyncConnection, event_id: str) -> bool:
    """Whether an event of this id was written to the SQL outbox (an ingested event applied)."""
    table = models.table(models.OutboxEvent)
    found = await connection.execute(select(table.c.id).where(table.c.event_id == event_id))
    return found.first() is not None


async def add_to_mongo_outbox(*, db: Database, session: Any, events: Sequence[Event]) -> None:
    """Queue events for publication, inside the caller's MongoDB transaction, in one write.

    One event's document has the event's id as its own (`payload`) and lists it in
    `event_ids`. A group's events share documents of up to GROUP_EVENTS (`payloads`, in
    order), so that a batch of a hundred costs the relay one read and one mark instead of a
    hundred of each; their ids go in one more document of the group, written published (the
    relay never reads it). `event_ids` is unique across the outbox
    (`sources.mongo.queries.INDEXES`): a transaction writing an id already written fails,
    which the caller reports as a duplicate. Kept apart from the payloads, the ids are
    indexed once and never again: marking a document published rewrites all of its index
    entries, a hundred of them for a document listing a hundred ids. A group relies on that
    index (no `_id` of it is an event id): the caller writes groups only where
    `outbox_ids_unique` says it is in place.

    `created_at` is when the documents were written, not the events' own times: it orders
    the relay and starts the retention window, which an upstream event's time (a backfill of
    last month's interactions, say) must not do."""
    if not events:
        return
    written = _write_time()
    if len(events) == 1:
        [event] = events
        documents = [
            {
                "_id": event.id,
                "payload": event.to_json(),
                "event_ids": [event.id],
                "created_at": written,
                "published": False,
            }
        ]
    else:
        # One group's documents share a time: their ids, in order, keep them in order.
        group = f"group:{uuid.uuid4()}"
        # The ids first: an id written before fails the write before the events are sent.
        documents = [
            {
                "_id": f"{group}:ids",
                "event_ids": [e.id for e in events],
                "created_at": written,
                "published": True,
            }
        ]
        documents += [
            {
                "_id": f"{group}:{start // GROUP_EVENTS:05d}",
                "payloads": [e.to_json() for e in events[start : start + GROUP_EVENTS]],
                "created_at": written,
                "published": False,
            }
            for start in range(0, len(events), GROUP_EVENTS)
        ]
    await db.outbox.insert_many(documents, session=session)


_last_written = dt.datetime.min.replace(tzinfo=dt.UTC)


def _write_time() -> dt.datetime:
    """Now, to the millisecond MongoDB keeps, and later than this process's last write: a
    customer's next document must not tie with its previous one (the relay would then order
    the two by id)."""
    global _last_written
    now = dt.datetime.now(dt.UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    _last_written = max(now, _last_written + dt.timedelta(milliseconds=1))
    return _last_written


async def in_mongo_outbox(*, db: Database, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids an outbox document holds (two queries: documents written
    before `event_ids` existed have only their `_id`)."""
    found: set[str] = set()
    async for document in db.outbox.find({"event_ids": {"$in": list(event_ids)}}, {"event_ids": 1}):
        found.update(document["event_ids"])
    async for document in db.outbox.find({"_id": {"$in": list(event_ids)}}, {"_id": 1}):
        found.add(document["_id"])
    return found & set(event_ids)


async def relay_sql(*, engine: AsyncEngine, bus: EventBus) -> int:
    """Publish the oldest unpublished SQL outbox rows, in order; returns how many.

    The rows are claimed (marked) first and published in the same transaction, which a
    failed publish rolls back: two instances' relays never publish the same rows. Read
    first, as SQLite reads (it has no `FOR UPDATE`), both could take them, and a subscriber
    resuming on another instance then received an event twice."""
    table = models.table(models.OutboxEvent)
    pending = (
        select(table.c.id)
        .where(table.c.published_at.is_(None))
        .order_by(table.c.id)
        .limit(BATCH)
        # Several instances may relay: each row is taken by one of them.
        .with_for_update(skip_locked=True)
    )
    async with begin_write(engine) as connection:
        claimed = await connection.execute(
            update(table)
            .where(table.c.id.in_(pending.scalar_subquery()))
            .values(published_at=dt.datetime.now(dt.UTC))
            .returning(table.c.id, table.c.payload)
        )
        rows = sorted(claimed.all(), key=lambda row: row[0])  # RETURNING keeps no order
        if not rows:
            return 0
        items = [(row_id, payload) for row_id, payload in rows]
        await bus.publish(_events("SQL outbox row", items))
    return len(rows)


def _events(kind: str, items: Sequence[tuple[Any, Any]]) -> list[Event]:
    """The events of outbox items in order. An item that is not an event (never written by
    c360, a hand edit) is logged and passed over, marked published with the rest: left
    unpublished, it would stop every event behind it, on every pass, for good."""
    events = []
    for key, payload in items:
        try:
            events.append(Event.from_json(payload))
        except (KeyError, TypeError, ValueError) as error:
            log.error("%s %s is not an event (%r): passed over", kind, key, error)
    return events


async def was_issued(*, engine: AsyncEngine, db: Database, event_id: str) -> bool:
    """Whether an event of this id ever went through an outbox (in SQL or MongoDB): told apart,
    an id the bus no longer retains and one that never was."""
    table = models.table(models.OutboxEvent)
    async with engine.connect() as connection:
        found = await connection.execute(select(table.c.id).where(table.c.event_id == event_id))
        if found.first() is not None:
            return True
    return bool(await in_mongo_outbox(db=db, event_ids=[event_id]))


async def relay_mongo(*, db: Database, bus: EventBus) -> int:
    """Publish the oldest unpublished MongoDB outbox documents, in the order they were written,
    about BATCH events at a time; returns how many events."""
    # Read a few documents at a time, and stop once BATCH events are in hand: a backlog of
    # grouped documents (a hundred events each) is not read whole to send two of them, and
    # the usual pass, a few documents, is one round trip.
    cursor = (
        db.outbox.find({"published": False})
        .sort([("created_at", 1), ("_id", 1)])
        .limit(BATCH)
        .batch_size(RELAY_READ)
    )
    taken: list[Any] = []
    items: list[tuple[Any, Any]] = []
    try:
        async for document in cursor:
            payloads = document.get("payloads") or [document.get("payload")]
            if taken and len(items) + len(payloads) > BATCH:
                break
            taken.append(document["_id"])
            items += [(document["_id"], payload) for payload in payloads]
    finally:
        await cursor.close()
    if not taken:
        return 0
    await bus.publish(_events("MongoDB outbox document", items))
    await db.outbox.update_many({"_id": {"$in": taken}}, {"$set": {"published": True}})
    return len(items)


async def outbox_ids_unique(*, db: Database) -> bool:
    """Whether the outbox's unique index on `event_ids` is in place (grouped documents rely on
    it to apply an event id once); raises PyMongoError when MongoDB cannot say."""
    indexes = await db.outbox.index_information()
    return any(
        index.get("key") == [("event_ids", 1)] and index.get("unique") for index in indexes.values()
    )


class UniqueIds:
    """Whether grouped outbox documents may be written: the unique index on event ids is in
    place. Asked at most every `every` seconds (an index dropped or built while c360 runs is
    seen within that), and again at the next write after MongoDB could not say."""

    def __init__(self, db: Database, *, every: float = 60.0) -> None:
        self._db = db
        self._every = every
        self._known: bool | None = None
        self._asked = 0.0

    async def hold(self) -> bool:
        now = time.monotonic()
        if self._known is not None and now - self._asked < self._every:
            return self._known
        try:
            known = await outbox_ids_unique(db=self._db)
        except PyMongoError:
            return False  # ask again next time
        if not known and self._known is not False:
            log.error(
                "the MongoDB outbox has no unique index on event_ids: ingested events are "
                "applied one at a time until it is in place"
            )
        self._known, self._asked = known, now
        return known


class Relay:
    """Runs the relays: at once when a write of this instance asks, and on a short poll for
    writes of other instances and rows left by a crash."""

    def __init__(
        self, *, engine: AsyncEngine, db: Database, bus: EventBus, poll_seconds: float
    ) -> None:
        self._engine = engine
        self._db = db
        self._bus = bus
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # A pass every `poll_seconds` while a store is down: one line when it goes, one when back.
        self._outage = Outage(
            "outbox relay: a store", log, meanwhile="events wait in the outbox until it is back"
        )
        self.published = 0

    def wake(self) -> None:
        """A write committed: publish it now rather than at the next poll."""
        self._wake.set()

    async def drain(self, until: float | None = None) -> int:
        """Publish everything pending now (or until the monotonic time `until`); returns how
        many events went out."""
        total = 0
        started = tracing.now()
        while True:
            sent = await relay_sql(engine=self._engine, bus=self._bus)
            sent += await relay_mongo(db=self._db, bus=self._bus)
            total += sent
            if sent == 0 or (until is not None and time.monotonic() >= until):
                self.published += total
                if total:
                    tracing.record("relay", started, {tracing.EVENTS: total})
                return total

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.drain()
            except Exception as error:
                if stopping():
                    raise asyncio.CancelledError from error
                # Whatever failed, the rows stay unpublished and the next pass tries them again.
                self._outage.failed(error)
            else:
                if stopping():
                    # A client library that turned the cancellation into an error of its own,
                    # then retried and succeeded, swallowed the stop: honour it here.
                    raise asyncio.CancelledError
                self._outage.succeeded()
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that lands as a
            # wake does, and `stop` would wait for this loop forever.
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()
            self._wake.clear()

    def start(self) -> None:
        self._stopping = False  # a relay stopped may be started again
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, last_pass_seconds: float = LAST_PASS_SECONDS) -> None:
        """Stop polling, then publish what is pending once more, for at most
        `last_pass_seconds`: a change committed just before a shutdown reaches subscribers now,
        not when another instance next polls (or this one starts again)."""
        if self._task is None:
            return
        task, self._task = self._task, None
        deadline = time.monotonic() + last_pass_seconds
        # The pass under way is let finish, not cancelled: cancelled between its publish and
        # its mark, it would leave events published but unmarked, to be published again (a
        # subscriber resuming on another instance would then receive them twice).
        self._stopping = True
        self._wake.set()
        try:
            async with asyncio.timeout(last_pass_seconds):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this stop was cancelled, not the relay
        except Exception:
            log.warning("outbox relay: its last pass failed", exc_info=True)
        try:
            # The deadline is checked between passes too: a client library that swallows a
            # cancellation and retries must not keep a stopping process publishing.
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                await self.drain(until=deadline)
        except Exception:
            log.warning(
                "outbox relay: events still pending at shutdown wait for the next relay",
                exc_info=True,
            )
