"""Idempotency markers of MongoDB changes: written in the change's own transaction, so a change
and its key's marker commit together or not at all (the key itself is kept in SQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo.errors import DuplicateKeyError

from sources.mongo.queries import Database

# Expired markers each keyed change deletes at most, as expired SQL keys are swept by each claim
# (`sources.sql.idempotency`): the collection stays as small as the window makes it. SecantusDB
# has no TTL indexes (its source knows no expireAfterSeconds), so c360 deletes them itself.
EXPIRED_PER_CHANGE = 100


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


async def sweep_expired(*, db: Database) -> int:
    """Delete up to EXPIRED_PER_CHANGE markers past their key's window; how many went."""
    # Outside the change's transaction: concurrent changes sweeping the same markers would
    # otherwise conflict and retry each other's transactions.
    now = dt.datetime.now(dt.UTC)
    expired = db.idempotency.find(
        {"expires_at": {"$lt": now}}, {"_id": 1}, limit=EXPIRED_PER_CHANGE
    )
    ids = [doc["_id"] async for doc in expired]
    if not ids:
        return 0
    # A marker renewed meanwhile (its key used again past its window) is not expired any more.
    deleted = await db.idempotency.delete_many({"_id": {"$in": ids}, "expires_at": {"$lt": now}})
    return deleted.deleted_count
