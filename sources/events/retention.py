"""Retention: what the stores keep only for a while, pruned by a background task.

- Published outbox rows (SQL) and documents (MongoDB), after `retention_outbox_seconds`
  (7 days). They are also the record of which upstream event ids were applied, so this is the
  deduplication window of `POST /events` (an event sent again later is applied again), and
  the horizon past which `after:` cannot tell an aged-out event id from one never issued.
  Unpublished events are never pruned, nor, in MongoDB, anything written after the oldest
  of them: a group's event ids are written apart from its events, already published
  (`sources.events.outbox.add_to_mongo_outbox`), and must outlast them.
- Dead letters, after `retention_dead_letters_seconds` (30 days).

Expired idempotency keys are forgotten where they are claimed (`sources.sql.idempotency`).
Rows go a few thousand per statement, each in its own transaction, so the prune never holds
the database for long.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sources.mongo.queries import Database
from sources.outage import Outage
from sources.periodic import Periodic
from sources.sql import models
from sources.sql.engine import begin_write

log = logging.getLogger(__name__)

BATCH = 5_000


@dataclass(frozen=True, slots=True)
class Windows:
    outbox_seconds: float
    dead_letters_seconds: float


async def prune(
    *, engine: AsyncEngine, db: Database, windows: Windows, now: dt.datetime | None = None
) -> dict[str, int]:
    """Delete what is past its window; how many of each went."""
    now = now or dt.datetime.now(dt.UTC)
    outbox = models.table(models.OutboxEvent)
    dead = models.table(models.DeadLetter)
    outbox_horizon = now - dt.timedelta(seconds=windows.outbox_seconds)
    gone = {
        "sql_outbox": await _delete(engine, outbox, outbox.c.published_at < outbox_horizon),
        "dead_letters": await _delete(
            engine,
            dead,
            dead.c.received_at < now - dt.timedelta(seconds=windows.dead_letters_seconds),
        ),
    }
    # A pending document without a time (a hand edit) sorts first: it does not end the search.
    oldest_pending = await db.outbox.find_one(
        {"published": False, "created_at": {"$type": "date"}},
        {"created_at": 1},
        sort=[("created_at", 1)],
    )
    pending_since = (oldest_pending or {}).get("created_at")
    mongo_horizon = outbox_horizon
    if isinstance(pending_since, dt.datetime):
        mongo_horizon = min(mongo_horizon, pending_since)
    documents = await db.outbox.delete_many(
        {"published": True, "created_at": {"$lt": mongo_horizon}}
    )
    gone["mongo_outbox"] = documents.deleted_count
    if any(gone.values()):
        log.info("retention: pruned %s", ", ".join(f"{n} {what}" for what, n in gone.items()))
    return gone


async def _delete(engine: AsyncEngine, table: Table, past: ColumnElement[Any]) -> int:
    total = 0
    while True:
        oldest = select(table.c.id).where(past).order_by(table.c.id).limit(BATCH)
        async with begin_write(engine) as connection:
            result = await connection.execute(
                delete(table).where(table.c.id.in_(oldest.scalar_subquery()))
            )
        total += result.rowcount
        if result.rowcount < BATCH:
            return total


class Retention(Periodic):
    """The background task: `prune` every `every_seconds`."""

    def __init__(
        self, *, engine: AsyncEngine, db: Database, windows: Windows, every_seconds: float
    ) -> None:
        async def work() -> None:
            await prune(engine=engine, db=db, windows=windows)

        super().__init__("retention", every_seconds, work, Outage("retention: a store", log))
