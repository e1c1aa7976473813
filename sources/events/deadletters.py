"""The dead-letter store: ingested events that were rejected, with the reasons, in SQL.

A dead letter keeps the raw event (or as much of it as could be parsed) so that it can be
looked at, fixed upstream and sent again; `id`, `type` and `source` are copied out of it when
they could be read, to find it again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sources.sql.models import DeadLetter

# The width of the event_id, type and source columns; the payload keeps the whole value.
_ATTRIBUTE_CHARS = 255


@dataclass(frozen=True, slots=True)
class Rejection:
    """An item refused at ingestion: what was received and why it was refused."""

    payload: Any
    reasons: Sequence[str]


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    id: int
    received_at: dt.datetime
    event_id: str | None
    type: str | None
    source: str | None
    reasons: list[str]
    payload: Any


async def record_dead_letters(
    *,
    connection: AsyncConnection,
    items: Sequence[Rejection],
    received_at: dt.datetime | None = None,
) -> None:
    """Keep rejected items in the dead-letter store, in one statement (the caller commits)."""
    if not items:
        return
    at = received_at or dt.datetime.now(dt.UTC)
    rows = [
        {
            "event_id": _attribute(item.payload, "id"),
            "type": _attribute(item.payload, "type"),
            "source": _attribute(item.payload, "source"),
            "received_at": at,
            "reasons": list(item.reasons),
            "payload": item.payload,
        }
        for item in items
    ]
    await connection.execute(insert(DeadLetter), rows)


async def list_dead_letters(
    *, connection: AsyncConnection, limit: int, before_id: int | None = None
) -> list[DeadLetterRecord]:
    """Dead letters newest first, at most `limit`, older than `before_id` when given."""
    table = DeadLetter.__table__
    stmt = select(
        table.c.id,
        table.c.received_at,
        table.c.event_id,
        table.c.type,
        table.c.source,
        table.c.reasons,
        table.c.payload,
    )
    if before_id is not None:
        stmt = stmt.where(table.c.id < before_id)
    result = await connection.execute(stmt.order_by(table.c.id.desc()).limit(limit))
    return [DeadLetterRecord(*row) for row in result]


def _attribute(payload: Any, name: str) -> str | None:
    if not isinstance(payload, dict):
        return None
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    # PostgreSQL text cannot hold NUL, and a rejected event may carry anything.
    return str(value).replace("\x00", "")[:_ATTRIBUTE_CHARS] or None
