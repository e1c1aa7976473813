"""Outbox documents of versions before documents listed their event ids, brought up to date.

Until 2026-12-05 a MongoDB outbox document held one event, its id only as the document's
`_id`. The unique index on `event_ids` (`sources.events.outbox.add_to_mongo_outbox`) does
not see such a document, and a grouped write no longer looks ids up before it writes
(`domain.engagement.record_interactions`): listed here at start, such documents keep an
event sent again a duplicate until retention removes them.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pymongo.errors import DuplicateKeyError

from sources.mongo.queries import Database

log = logging.getLogger(__name__)

# Documents written before this moment may list no event ids (versions before 2026-12-05).
IDS_LISTED_SINCE = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


async def list_legacy_ids(*, db: Database) -> int:
    """Give each outbox document written before documents listed their event ids its own id
    as its `event_ids`, so that the unique index covers it: a grouped write looks for ids
    applied before only when that index refuses one (`domain.engagement`). Idempotent; the
    documents are found by the relay's index, and age out with retention. Returns how many."""
    listed = 0
    for published in (False, True):
        # Equality and a range only: the relay's index answers it (a condition on a field's
        # existence made the embedded server scan every document).
        before = db.outbox.find(
            {"published": published, "created_at": {"$lt": IDS_LISTED_SINCE}},
            {"event_ids": {"$slice": 1}, "payloads": {"$slice": 1}},
        )
        async for document in before:
            if "event_ids" not in document and "payloads" not in document:
                listed += await _list_own_id(db, document["_id"])
    return listed


async def _list_own_id(db: Database, document_id: Any) -> int:
    try:
        updated = await db.outbox.update_one(
            {"_id": document_id, "event_ids": {"$exists": False}},
            {"$set": {"event_ids": [document_id]}},
        )
    except DuplicateKeyError:
        # Its id is in a later document too: applied twice before this version.
        log.warning("outbox document %s: its event id is listed by another", document_id)
        return 0
    return updated.modified_count
