"""Customer merges in the engagement store: interactions, tickets and profile identities moving
between two customers, each move once, inside the caller's MongoDB transaction.

The `merge_journal` collection holds, per merge (under the journal id its SQL record names),
exactly what moved, written in the same transaction as the move. That makes each step
idempotent (a journal that says a step is done means the step is skipped) and lets an unmerge
put back exactly what the merge took, whatever was added since.
"""

from __future__ import annotations

from typing import Any

from sources.mongo.queries import Database

Identity = dict[str, str]


def _identities(profile: dict[str, Any] | None) -> list[Identity]:
    # Normalised to {type, value}, so equality does not depend on a document's key order.
    return [
        {"type": str(i["type"]), "value": str(i["value"])}
        for i in (profile or {}).get("identities", [])
    ]


async def _ids(db: Database, collection: str, query: dict[str, Any], session: Any) -> list[Any]:
    cursor = db[collection].find(query, {"_id": 1}, session=session).sort("_id", 1)
    return [doc["_id"] async for doc in cursor]


async def _reassign(
    db: Database, collection: str, ids: list[Any], to_customer: int, session: Any
) -> None:
    if ids:
        await db[collection].update_many(
            {"_id": {"$in": ids}}, {"$set": {"customer_id": to_customer}}, session=session
        )


async def move_engagement(
    *,
    db: Database,
    session: Any,
    journal_id: str,
    merge_id: int,
    survivor_id: int,
    merged_id: int,
) -> dict[str, Any]:
    """Give the merged customer's interactions, tickets and identities to the survivor (whose
    profile is made if it has none); the merged profile keeps its other data. Returns the
    merge's journal: what moved. Done once per merge: a second call returns the journal."""
    journal = await db.merge_journal.find_one({"_id": journal_id}, session=session)
    if journal is not None:
        return journal
    interactions = await _ids(db, "interactions", {"customer_id": merged_id}, session)
    tickets = await _ids(db, "tickets", {"customer_id": merged_id}, session)
    merged_profile = await db.profiles.find_one({"_id": merged_id}, session=session)
    survivor_profile = await db.profiles.find_one({"_id": survivor_id}, session=session)
    identities = _identities(merged_profile)
    had = _identities(survivor_profile)
    await _reassign(db, "interactions", interactions, survivor_id, session)
    await _reassign(db, "tickets", tickets, survivor_id, session)
    if identities:
        await db.profiles.update_one(
            {"_id": merged_id}, {"$set": {"identities": []}}, session=session
        )
        await db.profiles.update_one(
            {"_id": survivor_id},
            {"$set": {"identities": had + [i for i in identities if i not in had]}},
            upsert=True,
            session=session,
        )
    journal = {
        "_id": journal_id,
        "merge_id": merge_id,
        "survivor_id": survivor_id,
        "merged_id": merged_id,
        "interactions": interactions,
        "tickets": tickets,
        "identities": identities,
        # The survivor keeps these at an unmerge: it had them before the merge.
        "shared_identities": [i for i in identities if i in had],
        "survivor_profile_made": bool(identities) and survivor_profile is None,
        "returned": None,
    }
    await db.merge_journal.insert_one(journal, session=session)
    return journal


async def return_engagement(
    *, db: Database, session: Any, journal_id: str, survivor_id: int, merged_id: int
) -> dict[str, Any]:
    """Give back to the merged customer what the merge moved and the survivor still holds;
    whatever the survivor gained since stays. Returns the journal, with what went back under
    `returned`. Done once per merge: a second call returns the journal."""
    journal = await db.merge_journal.find_one({"_id": journal_id}, session=session)
    if journal is None:
        # A merge that never reached MongoDB moved nothing there.
        journal = {"_id": journal_id, "interactions": [], "tickets": [], "identities": []}
    if journal.get("returned") is not None:
        return journal
    returned: dict[str, Any] = {"interactions": [], "tickets": [], "identities": []}
    if journal["interactions"] or journal["tickets"] or journal["identities"]:
        for collection in ("interactions", "tickets"):
            still = {"_id": {"$in": journal[collection]}, "customer_id": survivor_id}
            returned[collection] = await _ids(db, collection, still, session)
            await _reassign(db, collection, returned[collection], merged_id, session)
        survivor_profile = await db.profiles.find_one({"_id": survivor_id}, session=session)
        merged_profile = await db.profiles.find_one({"_id": merged_id}, session=session)
        held = _identities(survivor_profile)
        back = [i for i in journal["identities"] if i in held]
        returned["identities"] = back
        if back:
            shared = journal.get("shared_identities", [])
            kept = [i for i in held if i not in back or i in shared]
            has = _identities(merged_profile)
            await db.profiles.update_one(
                {"_id": merged_id},
                {"$set": {"identities": has + [i for i in back if i not in has]}},
                upsert=True,
                session=session,
            )
            assert survivor_profile is not None
            bare = survivor_profile.keys() <= {"_id", "identities"}
            if journal.get("survivor_profile_made") and bare and not kept:
                # The merge made this profile and nothing was added to it since.
                await db.profiles.delete_one({"_id": survivor_id}, session=session)
            else:
                await db.profiles.update_one(
                    {"_id": survivor_id}, {"$set": {"identities": kept}}, session=session
                )
    journal["returned"] = returned
    await db.merge_journal.update_one(
        {"_id": journal_id}, {"$set": {"returned": returned}}, upsert=True, session=session
    )
    return journal
