"""Idempotency markers of MongoDB changes: written in the change's own transaction, so a change
and its key's marker commit together or not at all (the key itself is kept in SQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo.errors import DuplicateKeyError

from sources.mongo.queries import Database


async def mark_applied(*, db: Database, session: Any, marker: str, expires_at: dt.datetime) -> bool:
    """Record the key's change inside the caller's transaction; False when a change under the
    key was recorded before (the transaction must then change nothing)."""
    # A marker outlives its key's window only until the key is used again.
    await db.idempotency.delete_one(
        {"_id": marker, "expires_at": {"$lt": dt.datetime.now(dt.UTC)}}, session=session
    )
    try:
        await db.idempotency.insert_one({"_id": marker, "expires_at": expires_at}, session=session)
    except DuplicateKeyError:
        return False
    return True
