"""A merge or an unmerge cut short between its SQL and MongoDB steps (MongoDB unreachable) is
left marked as under way, with no event sent, and the next call touching the customers
finishes it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pymongo
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

import domain
from api.connections import Connections
from domain import merges
from domain.changes import Changes
from domain.errors import ChangeRejectedError
from sources.mongo import merges as mongo_merges
from sources.net import free_port
from sources.sql.merges import (
    MERGED,
    MERGING,
    UNMERGED,
    UNMERGING,
    MergeRecord,
    merge_by_id,
    pending_merges,
)
from sources.sql.queries import customers_by_ids, orders_by_ids
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer


async def _state(connections: Connections, merge_id: int) -> tuple[str, str]:
    """The merge's state and the merged customer's status."""
    async with connections.engine.connect() as sql:
        record = await merge_by_id(connection=sql, merge_id=merge_id)
        assert record is not None
        [merged] = await customers_by_ids(connection=sql, ids=[record.merged_id])
    assert merged is not None
    return record.state, merged.status


async def _owners(connections: Connections, merged: int) -> set[int]:
    """Who owns the merged customer's interactions and ticket now."""
    db = connections.db
    found: list[dict[str, Any]] = await db.interactions.find(
        {"customer_id": {"$exists": True}, "_merge_test": merged}
    ).to_list(None)
    found += await db.tickets.find({"_id": f"TT-{merged}"}).to_list(None)
    return {doc["customer_id"] for doc in found}


async def _pair(connections: Connections, vendor_store: VendorStore) -> tuple[int, int]:
    """A survivor and a customer with two interactions (marked) to merge into it."""
    a = await build_customer(connections, vendor_store)
    b = await build_customer(connections, vendor_store, interactions=2)
    await connections.db.interactions.update_many({"customer_id": b}, {"$set": {"_merge_test": b}})
    return a, b


async def _cut_short(
    connections: Connections, vendor_store: VendorStore, broken: Changes
) -> tuple[int, int, MergeRecord]:
    """A merge of a pair whose MongoDB step failed: its record, left MERGING."""
    a, b = await _pair(connections, vendor_store)
    with pytest.raises(ChangeRejectedError), pymongo.timeout(0.5):
        await merges.merge_customers(broken, survivor_id=a, merged_id=b, merged_by="t")
    async with connections.engine.connect() as sql:
        [record] = await pending_merges(connection=sql, customer_ids=[a])
    return a, b, record


@pytest.fixture
async def broken(connections: Connections) -> AsyncIterator[Changes]:
    """The test's changes, with MongoDB unreachable."""
    unreachable: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=200&directConnection=true"
    )
    yield dataclasses.replace(connections.changes, db=unreachable["c360"])
    await unreachable.close()


async def test_a_step_cut_short_is_finished_by_the_next_call(
    connections: Connections, vendor_store: VendorStore, broken: Changes
) -> None:
    a, b = await _pair(connections, vendor_store)
    # A deadline shorter than the merge's own: the driver gives up sooner.
    with pytest.raises(ChangeRejectedError) as refused, pymongo.timeout(0.5):
        await merges.merge_customers(broken, survivor_id=a, merged_id=b, merged_by="t")
    assert refused.value.code == "MERGE_IN_PROGRESS"
    assert isinstance(refused.value.__cause__, PyMongoError)
    async with connections.engine.connect() as sql:
        [record] = await pending_merges(connection=sql, customer_ids=[a])
    assert await _state(connections, record.id) == (MERGING, "MERGED")
    assert await _owners(connections, b) == {b}

    # The retry finishes the merge: the events go out now, once.
    done, events = await merges.merge_customers(
        connections.changes, survivor_id=a, merged_id=b, merged_by="t"
    )
    assert done.id == record.id and done.state == MERGED
    assert [e.type for e in events] == ["customer.merged"] * 2
    assert len(done.moved["interactions"]) == 2 and done.moved["tickets"] == [f"TT-{b}"]
    assert await _owners(connections, b) == {a}

    with pytest.raises(ChangeRejectedError, match="finishes by itself"), pymongo.timeout(0.5):
        await merges.unmerge_customers(broken, merge_id=done.id, unmerged_by="t")
    assert await _state(connections, done.id) == (UNMERGING, "ACTIVE")
    assert await _owners(connections, b) == {a}

    c = await build_customer(connections, vendor_store)
    # A merge touching either customer first finishes the unmerge, then goes on.
    merged, _ = await merges.merge_customers(
        connections.changes, survivor_id=c, merged_id=b, merged_by="t"
    )
    # (b is merged again, into c, now.)
    assert await _state(connections, done.id) == (UNMERGED, "MERGED")
    assert (merged.survivor_id, merged.state) == (c, MERGED)
    assert len(merged.moved["interactions"]) == 2
    assert await _owners(connections, b) == {c}


async def test_a_merge_nobody_retries_is_finished_in_the_background(
    connections: Connections, vendor_store: VendorStore, broken: Changes
) -> None:
    a, b, record = await _cut_short(connections, vendor_store, broken)

    # Younger than the age asked: left to its caller's retry.
    assert await merges.finish_stalled(connections.changes, older_than=dt.timedelta(hours=1)) == 0
    assert await _state(connections, record.id) == (MERGING, "MERGED")
    # While MongoDB is still down, it stays as it was: counted as not finished, no error.
    assert await merges.finish_stalled(broken, older_than=dt.timedelta(0)) == 0
    assert await _state(connections, record.id) == (MERGING, "MERGED")
    assert await merges.finish_stalled(connections.changes, older_than=dt.timedelta(0)) >= 1
    assert await _state(connections, record.id) == (MERGED, "MERGED")
    assert await _owners(connections, b) == {a}
    assert await merges.finish_stalled(connections.changes, older_than=dt.timedelta(0)) == 0


async def test_two_merges_of_one_customer_at_once_leave_one_merge(
    connections: Connections, vendor_store: VendorStore
) -> None:
    a, b = await _pair(connections, vendor_store)
    c = await build_customer(connections, vendor_store)
    outcomes = await asyncio.gather(
        merges.merge_customers(connections.changes, survivor_id=a, merged_id=b, merged_by="t"),
        merges.merge_customers(connections.changes, survivor_id=c, merged_id=b, merged_by="t"),
        return_exceptions=True,
    )
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(done) == len(refused) == 1, outcomes
    [(record, events)] = done
    [error] = refused
    assert isinstance(error, ChangeRejectedError)
    assert error.code in ("ALREADY_MERGED", "MERGE_IN_PROGRESS")
    assert record.state == MERGED and len(events) == 2
    # Everything of b went to the one survivor, once.
    assert await _owners(connections, b) == {record.survivor_id}
    async with connections.engine.connect() as sql:
        [merged] = await customers_by_ids(connection=sql, ids=[b])
        assert merged is not None and merged.merged_into == record.survivor_id
        assert await pending_merges(connection=sql, customer_ids=[a, b, c]) == []


async def test_an_order_change_during_a_merge_lands_on_the_order_wherever_it_went(
    connections: Connections, vendor_store: VendorStore
) -> None:
    a, b = await _pair(connections, vendor_store)
    order_id = b * 1000  # build_customer's first order of b, SHIPPED
    merged, (_, event) = await asyncio.gather(
        merges.merge_customers(connections.changes, survivor_id=a, merged_id=b, merged_by="t"),
        domain.change_order_status(connections.changes, order_id=order_id, status="DELIVERED"),
    )
    assert merged[0].state == MERGED and merged[0].moved["orders"] == [order_id]
    async with connections.engine.connect() as sql:
        [order] = await orders_by_ids(connection=sql, ids=[order_id])
    # Whichever went first, neither change is lost: delivered, and the survivor's.
    assert order is not None and (order.status, order.customer_id) == ("DELIVERED", a)
    # Its event names the customer that held the order when it changed.
    assert event.subject in (str(a), str(b))


async def test_a_merge_cut_short_after_its_mongodb_step_moves_nothing_twice(
    connections: Connections, vendor_store: VendorStore, broken: Changes
) -> None:
    a, b, record = await _cut_short(connections, vendor_store, broken)
    # Step 2 commits in MongoDB, then the process dies before step 3 records it in SQL.
    db = connections.db
    async with db.client.start_session() as session:

        async def step_2(session: Any) -> dict[str, Any]:
            moved: dict[str, Any] = await mongo_merges.move_engagement(
                db=db,
                session=session,
                journal_id=str(record.moved["journal"]),
                merge_id=record.id,
                survivor_id=a,
                merged_id=b,
            )
            return moved

        journal = await session.with_transaction(step_2)
    assert await _owners(connections, b) == {a}
    assert await _state(connections, record.id) == (MERGING, "MERGED")

    # The finish finds the journal: the documents stay where they are, and the record learns
    # what moved from it.
    assert await merges.finish_stalled(connections.changes, older_than=dt.timedelta(0)) >= 1
    async with connections.engine.connect() as sql:
        done = await merge_by_id(connection=sql, merge_id=record.id)
    assert done is not None and done.state == MERGED
    assert sorted(done.moved["interactions"]) == sorted(str(i) for i in journal["interactions"])
    assert len(done.moved["interactions"]) == 2 and done.moved["tickets"] == [f"TT-{b}"]
    assert await _owners(connections, b) == {a}
