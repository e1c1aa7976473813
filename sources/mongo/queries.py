"""Batched reads of the engagement store: each function is one round trip for many keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from sources.mongo.records import InteractionRecord, ProfileRecord, TicketRecord
from sources.paging import Page, PageKey, PageRow, Position, group_pages

Database = AsyncDatabase[dict[str, Any]]


@dataclass(frozen=True)
class Index:
    keys: list[tuple[str, int]]
    # Unique over the documents that have the field (sparse: documents without it are not in
    # the index at all, so they do not collide as nulls).
    unique: bool = False


INDEXES: dict[str, list[Index]] = {
    # The timeline is read newest first per customer, optionally by type.
    "interactions": [
        Index([("customer_id", ASCENDING), ("occurred_at", DESCENDING), ("_id", DESCENDING)])
    ],
    "tickets": [Index([("customer_id", ASCENDING), ("status", ASCENDING)])],
    # Lookups by identity (loyalty number, device id, ...) land on the profile.
    "profiles": [Index([("identities.type", ASCENDING), ("identities.value", ASCENDING)])],
    # Expired idempotency markers are found by their expiry (`sources.mongo.idempotency`).
    "idempotency": [Index([("expires_at", ASCENDING)])],
    # The relay reads the unpublished documents oldest first, and retention the published
    # ones older than its window (`sources.events`): without this index each pass of either
    # scans every event the dedup window keeps.
    "outbox": [
        Index([("published", ASCENDING), ("created_at", ASCENDING)]),
        # An event id is applied once (`sources.events.outbox.add_to_mongo_outbox`).
        Index([("event_ids", ASCENDING)], unique=True),
    ],
}


async def ensure_indexes(*, db: Database) -> None:
    """Create the indexes the queries below rely on (idempotent). Each is tried even when
    another fails; the first failure is raised once all were tried."""
    failures: list[PyMongoError] = []
    for collection, indexes in INDEXES.items():
        for index in indexes:
            try:
                if index.unique:
                    await db[collection].create_index(index.keys, unique=True, sparse=True)
                else:
                    await db[collection].create_index(index.keys)
            except PyMongoError as error:
                failures.append(error)
    if failures:
        raise failures[0]


async def profiles_by_customer_ids(
    *, db: Database, ids: Sequence[int]
) -> list[ProfileRecord | None]:
    """Profiles in key order, None for a customer without one."""
    found: dict[int, ProfileRecord] = {}
    unique = list(set(ids))
    # At most one profile per key: one more than that lets the first batch hold them all and
    # close the cursor (the default first batch is 101 documents, then a getMore).
    cursor = db.profiles.find({"_id": {"$in": unique}}, batch_size=len(unique) + 1)
    async for doc in cursor:
        found[doc["_id"]] = ProfileRecord.from_document(doc)
    return [found.get(i) for i in ids]


async def tickets_by_customer_ids(
    *, db: Database, keys: Sequence[tuple[int, str | None]]
) -> list[list[TicketRecord]]:
    """Each (customer id, status or None for all) key's tickets, newest first."""
    ids = list({customer_id for customer_id, _ in keys})
    by_customer: dict[int, list[TicketRecord]] = {}
    cursor = db.tickets.find({"customer_id": {"$in": ids}}).sort(
        [("customer_id", ASCENDING), ("created_at", DESCENDING)]
    )
    async for doc in cursor:
        by_customer.setdefault(doc["customer_id"], []).append(TicketRecord.from_document(doc))
    return [
        [t for t in by_customer.get(customer_id, []) if status is None or t.status == status]
        for customer_id, status in keys
    ]


async def timeline_pages(*, db: Database, keys: Sequence[PageKey]) -> list[Page[InteractionRecord]]:
    """A page of each customer's interactions, newest first; `filters` are the types kept.

    One aggregation per group of keys sharing page arguments: `$topN` per customer keeps the
    server from sending more than a page (plus one, for hasNextPage) for anyone.
    """

    async def run(owners: list[int], template: PageKey) -> list[PageRow[InteractionRecord]]:
        match: dict[str, Any] = {"customer_id": {"$in": owners}}
        if template.filters:
            match["type"] = {"$in": list(template.filters)}
        if template.after is not None:
            at, last_id = template.after.at, ObjectId(template.after.id)
            match["$or"] = [
                {"occurred_at": {"$lt": at}},
                {"occurred_at": at, "_id": {"$lt": last_id}},
            ]
        pipeline = [
            {"$match": match},
            {
                "$group": {
                    "_id": "$customer_id",
                    "top": {
                        "$topN": {
                            "n": template.first + 1,
                            "sortBy": {"occurred_at": -1, "_id": -1},
                            "output": "$$ROOT",
                        }
                    },
                }
            },
        ]
        rows: list[PageRow[InteractionRecord]] = []
        async for group in await db.interactions.aggregate(pipeline):
            for doc in group["top"]:
                record = InteractionRecord.from_document(doc)
                position = Position(at=record.occurred_at, id=record.id)
                rows.append(PageRow(record.customer_id, record, position))
        return rows

    return await group_pages(keys, run, counted=False)


async def customer_ids_by_identities(
    *, db: Database, keys: Sequence[tuple[str, str]]
) -> list[list[int]]:
    """The ids of the customers whose profile holds each (identity type, value) key, in one
    query (served by the `identities.type` + `identities.value` index)."""
    values: dict[str, set[str]] = {}
    for kind, value in keys:
        values.setdefault(kind, set()).add(value)
    clauses = [
        {"identities": {"$elemMatch": {"type": kind, "value": {"$in": sorted(wanted)}}}}
        for kind, wanted in values.items()
    ]
    found: dict[tuple[str, str], set[int]] = {}
    if clauses:
        query = clauses[0] if len(clauses) == 1 else {"$or": clauses}
        async for doc in db.profiles.find(query, {"identities": 1}):
            for identity in doc.get("identities", []):
                pair = (identity.get("type"), identity.get("value"))
                found.setdefault(pair, set()).add(doc["_id"])
    return [sorted(found.get(key, ())) for key in keys]
