"""Merging two records of one person into a survivor, and undoing it.

A merge moves the merged customer's orders (SQL) and its interactions, tickets and profile
identities (MongoDB) to the survivor and marks it MERGED; an unmerge moves back exactly what
the merge moved and the survivor still holds, so whatever reached the survivor since stays.

Two stores cannot share a transaction, so each call runs in steps, and the merge record in
SQL (`customer_merges`, its state in `moved["state"]`) says how far it got:

1. SQL, one transaction: lock both customers (in id order, so two merges cannot deadlock),
   check them, move the orders, set the merged customer's status, and write the merge record
   as MERGING (or, for an unmerge, move the orders back, make the customer ACTIVE again and
   mark the record UNMERGING, stamped with who and when).
2. MongoDB, one transaction: move the documents and write what moved to the merge journal
   (`sources.mongo.merges`); a journal that says the step is done makes it a no-op.
3. SQL, one transaction, holding both customers' locks again: copy what moved into the merge
   record, mark it MERGED (or UNMERGED), and add the change events to the outbox.

A failure after step 1 leaves a record MERGING or UNMERGING, never a half-move nobody knows
of, and the call answers MERGE_IN_PROGRESS. The next merge or unmerge call that touches either
customer (a retry of the same call, for one) first finishes it, steps 2 and 3 being safe to
run again; so does each instance's `StalledMerges` task, once a minute, if nobody calls. The
events go out with step 3, so subscribers hear of a merge once it is whole. The order was
chosen over undoing step 1 when step 2 fails because an undo can itself fail or be cut short
by a crash; a finish only needs to be retried. Between steps 1 and 3 (a few milliseconds, or
until the finish after a failure), the survivor shows the merged orders but not yet the
merged timeline.

Writes naming a merged customer are refused or go to the survivor (`domain.changes.lock_customer`).
One window stays: an interaction, ticket or consent written to the merged customer's MongoDB
documents by a call that checked the customer just before step 1 and commits just after step
2 listed what to move (milliseconds) stays with the merged record.

Unmerge refuses when the survivor has since been merged into another customer (unmerge that
merge first: SURVIVOR_MERGED). The merged customer cannot have been merged again, since a
MERGED customer cannot be merged; after an unmerge and a new merge, the old record answers
ALREADY_UNMERGED.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pymongo
from pymongo.errors import DuplicateKeyError
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.changes import Changes, change_event, sql_transaction
from domain.errors import ChangeRejectedError
from sources.events.envelope import Event
from sources.events.outbox import add_to_sql_outbox
from sources.mongo import loaders as mongo_loaders
from sources.mongo import merges as mongo_merges
from sources.mongo.source import MONGO
from sources.outage import STORE_FAILURES, Outage
from sources.periodic import Periodic
from sources.sql import loaders as sql_loaders
from sources.sql import merges as sql_merges
from sources.sql import writes
from sources.sql.merges import MERGED, MERGING, UNMERGED, UNMERGING, MergeRecord
from sources.sql.records import CustomerRecord
from sources.sql.source import SQL

log = logging.getLogger(__name__)
T = TypeVar("T")
MOVED = ("orders", "interactions", "tickets", "identities")
# How long the MongoDB step of a merge or an unmerge may take before it is given up (and left
# to a retry to finish).
MONGO_STEP_SECONDS = 10.0


async def merge_customers(
    changes: Changes, *, survivor_id: int, merged_id: int, merged_by: str
) -> tuple[MergeRecord, list[Event]]:
    """Merge `merged_id` into `survivor_id`; returns the merge record and its events (one per
    customer). Retrying a merge cut short by a failure finishes it."""
    if survivor_id == merged_id:
        raise ChangeRejectedError(
            "SAME_CUSTOMER", "a customer cannot be merged into itself", "mergedId"
        )
    for done, events in await _finish_pending(changes, (survivor_id, merged_id)):
        if (done.survivor_id, done.merged_id, done.state) == (survivor_id, merged_id, MERGED):
            return done, events
    at = dt.datetime.now(dt.UTC)
    async with sql_transaction(changes, None) as connection:
        survivor, merged = await _lock_pair(connection, survivor_id, merged_id)
        for customer, field in ((merged, "mergedId"), (survivor, "survivorId")):
            if customer.status != "ACTIVE":
                raise ChangeRejectedError(
                    "ALREADY_MERGED",
                    f"customer {customer.id} was merged into customer {customer.merged_into}",
                    field,
                )
        await _refuse_pending(connection, survivor_id, merged_id)
        orders = await sql_merges.move_orders(
            connection=connection, from_customer=merged_id, to_customer=survivor_id
        )
        await writes.update_customer(
            connection=connection,
            customer_id=merged_id,
            values={"status": "MERGED", "merged_into": survivor_id},
            at=at,
        )
        record = await sql_merges.insert_merge(
            connection=connection,
            survivor_id=survivor_id,
            merged_id=merged_id,
            merged_by=merged_by,
            merged_at=at,
            # The MongoDB journal's id: unique, so a journal left by another database's merge
            # of the same id can never pass for this one's.
            moved={"state": MERGING, "journal": uuid.uuid4().hex, "orders": orders},
        )
    await _invalidate(changes, record, orders)
    return await _finish_or_later(changes, record.id)


async def unmerge_customers(
    changes: Changes, *, merge_id: int, unmerged_by: str
) -> tuple[MergeRecord, list[Event]]:
    """Undo a merge: both customers as they were, except that what reached the survivor since
    the merge stays there. Returns the merge record and its events (one per customer)."""
    async with changes.engine.connect() as connection:
        found = await sql_merges.merge_by_id(connection=connection, merge_id=merge_id)
    if found is None:
        raise ChangeRejectedError("MERGE_NOT_FOUND", f"no merge has id {merge_id}", "mergeId")
    for done, events in await _finish_pending(changes, (found.survivor_id, found.merged_id)):
        if done.id == merge_id and done.state == UNMERGED:
            return done, events
    at = dt.datetime.now(dt.UTC)
    async with sql_transaction(changes, None) as connection:
        survivor, merged = await _lock_pair(connection, found.survivor_id, found.merged_id)
        record = await sql_merges.merge_by_id(connection=connection, merge_id=merge_id, lock=True)
        assert record is not None
        if record.unmerged_at is not None or merged.merged_into != survivor.id:
            raise ChangeRejectedError(
                "ALREADY_UNMERGED", f"merge {merge_id} was undone already", "mergeId"
            )
        if survivor.merged_into is not None:
            raise ChangeRejectedError(
                "SURVIVOR_MERGED",
                f"customer {survivor.id} has since been merged into customer "
                f"{survivor.merged_into}: unmerge that merge first",
                "mergeId",
            )
        await _refuse_pending(connection, survivor.id, merged.id)
        orders = await sql_merges.move_orders(
            connection=connection,
            from_customer=survivor.id,
            to_customer=merged.id,
            only=record.moved["orders"],
        )
        await writes.update_customer(
            connection=connection,
            customer_id=merged.id,
            values={"status": "ACTIVE", "merged_into": None},
            at=at,
        )
        record = await sql_merges.update_merge(
            connection=connection,
            merge_id=merge_id,
            values={
                "moved": {**record.moved, "state": UNMERGING, "returned": {"orders": orders}},
                "unmerged_by": unmerged_by,
                "unmerged_at": at,
            },
        )
    await _invalidate(changes, record, orders)
    return await _finish_or_later(changes, merge_id)


async def finish_stalled(changes: Changes, *, older_than: dt.timedelta) -> int:
    """Finish every merge and unmerge under way for longer than `older_than` (a failure cut it
    short and nobody retried); returns how many were finished."""
    before = dt.datetime.now(dt.UTC) - older_than
    async with changes.engine.connect() as connection:
        stalled = await sql_merges.stalled_merges(connection=connection, before=before)
    finished = 0
    for record in stalled:
        try:
            await _finish(changes, record.id)
        except STORE_FAILURES as error:  # cut short after its first step: finished later
            # One merge whose store still fails must not hold up the others.
            log.warning("merge %d could not be finished yet: %r", record.id, error)
        else:
            finished += 1
    return finished


class StalledMerges(Periodic):
    """Each instance's background task that finishes merges a failure cut short."""

    def __init__(self, changes: Changes, *, every_seconds: float) -> None:
        async def finish() -> None:
            # As old as one wait: a merge between its steps right now is its caller's.
            finished = await finish_stalled(changes, older_than=dt.timedelta(seconds=every_seconds))
            if finished:
                log.info("finished %d merges a failure had cut short", finished)

        super().__init__(
            "stalled-merges",
            every_seconds,
            finish,
            Outage("finishing stalled merges: a store", log),
        )


async def _finish_or_later(changes: Changes, merge_id: int) -> tuple[MergeRecord, list[Event]]:
    """`_finish`, or MERGE_IN_PROGRESS when a store fails: the first step is recorded, and
    a retry or the `StalledMerges` task finishes it."""
    try:
        return await _finish(changes, merge_id)
    except STORE_FAILURES as error:  # cut short after its first step: finished later
        log.warning("merge %d is recorded but not finished: %r", merge_id, error)
        raise ChangeRejectedError(
            "MERGE_IN_PROGRESS",
            f"merge {merge_id} is recorded but a store did not answer before it was finished; "
            "it finishes by itself within a minute, or retry",
        ) from error


async def _lock_pair(
    connection: AsyncConnection, survivor_id: int, merged_id: int
) -> tuple[CustomerRecord, CustomerRecord]:
    """Both customers, locked in id order (every merge takes them in the same order)."""
    locked: dict[int, CustomerRecord] = {}
    for customer_id in sorted((survivor_id, merged_id)):
        customer = await writes.lock_customer(connection=connection, customer_id=customer_id)
        if customer is None:
            field = "survivorId" if customer_id == survivor_id else "mergedId"
            raise ChangeRejectedError(
                "CUSTOMER_NOT_FOUND", f"no customer has id {customer_id}", field
            )
        locked[customer_id] = customer
    return locked[survivor_id], locked[merged_id]


async def _refuse_pending(connection: AsyncConnection, *customer_ids: int) -> None:
    """Refuse while another merge or unmerge of these customers is between its steps."""
    if await sql_merges.pending_merges(connection=connection, customer_ids=customer_ids):
        raise ChangeRejectedError(
            "MERGE_IN_PROGRESS",
            "another merge or unmerge of these customers is under way; retry in a moment",
        )


async def _finish_pending(
    changes: Changes, customer_ids: Sequence[int]
) -> list[tuple[MergeRecord, list[Event]]]:
    """Finish every merge and unmerge of these customers that a failure cut short."""
    async with changes.engine.connect() as connection:
        pending = await sql_merges.pending_merges(connection=connection, customer_ids=customer_ids)
    return [await _finish_or_later(changes, record.id) for record in pending]


async def _finish(changes: Changes, merge_id: int) -> tuple[MergeRecord, list[Event]]:
    """Steps 2 and 3 of a merge or an unmerge (see the module's docstring); a record already
    finished, by this call or another, is returned as it is, with no events."""
    async with changes.engine.connect() as connection:
        found = await sql_merges.merge_by_id(connection=connection, merge_id=merge_id)
    assert found is not None
    async with sql_transaction(changes, None) as connection:
        # Held through the MongoDB step: no other step of these customers runs meanwhile.
        await _lock_pair(connection, found.survivor_id, found.merged_id)
        locked = await sql_merges.merge_by_id(connection=connection, merge_id=merge_id, lock=True)
        assert locked is not None
        if locked.state not in (MERGING, UNMERGING):
            return locked, []
        db, journal_id = changes.db, str(locked.moved["journal"])
        survivor_id, merged_id = locked.survivor_id, locked.merged_id
        if locked.state == MERGING:
            journal = await _in_mongo_transaction(
                changes,
                lambda session: mongo_merges.move_engagement(
                    db=db,
                    session=session,
                    journal_id=journal_id,
                    merge_id=merge_id,
                    survivor_id=survivor_id,
                    merged_id=merged_id,
                ),
            )
            moved = {**locked.moved, "state": MERGED, **_listed(journal)}
            data = {"merged_by": locked.merged_by, "moved": _counts(moved)}
            type = "customer.merged"
        else:
            journal = await _in_mongo_transaction(
                changes,
                lambda session: mongo_merges.return_engagement(
                    db=db,
                    session=session,
                    journal_id=journal_id,
                    survivor_id=survivor_id,
                    merged_id=merged_id,
                ),
            )
            returned = {**locked.moved["returned"], **_listed(journal["returned"])}
            moved = {**locked.moved, "state": UNMERGED, "returned": returned}
            data = {"unmerged_by": str(locked.unmerged_by), "returned": _counts(returned)}
            type = "customer.unmerged"
        record = await sql_merges.update_merge(
            connection=connection, merge_id=merge_id, values={"moved": moved}
        )
        data = {
            "merge_id": str(record.id),
            "survivor_id": str(record.survivor_id),
            "merged_id": str(record.merged_id),
            **data,
        }
        at = dt.datetime.now(dt.UTC)
        # Both customers' subscribers hear of it: one event with each as the subject.
        events = [
            change_event(type, customer_id, data, at, None)
            for customer_id in (record.survivor_id, record.merged_id)
        ]
        await add_to_sql_outbox(connection=connection, events=events)
    await _invalidate(changes, record, [])
    changes.published()
    return record, events


async def _in_mongo_transaction(changes: Changes, work: Callable[[Any], Awaitable[T]]) -> T:
    """`work(session)` in one MongoDB transaction, given up after MONGO_STEP_SECONDS; once more
    if a concurrent finish of the same step wrote its journal first (the second run then finds
    that journal)."""
    for attempt in (1, 2):
        try:
            # The SQL locks of both customers are held meanwhile: without a deadline, the
            # driver would retry a transaction against an unreachable server for two minutes.
            with pymongo.timeout(MONGO_STEP_SECONDS):
                async with changes.db.client.start_session() as session:
                    result: T = await session.with_transaction(work)
                    return result
        except DuplicateKeyError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _listed(journal: dict[str, Any]) -> dict[str, list[Any]]:
    """The journal's lists of what moved, as JSON for the merge record."""
    return {
        "interactions": [str(i) for i in journal["interactions"]],
        "tickets": [str(t) for t in journal["tickets"]],
        "identities": list(journal["identities"]),
    }


def _counts(moved: dict[str, Any]) -> dict[str, int]:
    return {name: len(moved.get(name, [])) for name in MOVED}


async def _invalidate(changes: Changes, record: MergeRecord, orders: Sequence[int]) -> None:
    """Every cached view of either customer that a merge step changes."""
    both = [record.survivor_id, record.merged_id]
    await changes.invalidate(SQL, sql_loaders.CUSTOMER, keys=both)
    await changes.invalidate(SQL, sql_loaders.ORDER, keys=orders)
    await changes.invalidate(SQL, sql_loaders.ORDER_PAGE, owners=both)
    await changes.invalidate(MONGO, mongo_loaders.PROFILE, keys=both)
    await changes.invalidate(MONGO, mongo_loaders.TIMELINE_PAGE, owners=both)
    await changes.invalidate(MONGO, mongo_loaders.TICKETS, owners=both)
