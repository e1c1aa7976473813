"""Events own what they name: an upstream event changes an order or a ticket only if it is the
subject's (after a merge, its survivor's); otherwise it is refused with its reason and
dead-lettered, and nothing changes: no write, no outbox entry, no cache invalidation."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.connections import Connections
from api.settings import Settings
from domain import merges
from domain.appliers import APPLIERS
from sources.cache.entity import INVALIDATION, EntityCache
from sources.events.outbox import in_mongo_outbox
from sources.events.registry import SchemaRegistry
from sources.sql import models
from sources.sql.queries import orders_by_ids
from sources.sql.records import OrderRecord
from sources.thirdparty.simulator import VendorStore
from tests.auth import PUBLISHER
from tests.builders import build_customer
from tests.conftest import running_app
from tests.http.test_events_applied import BATCH, CE, cloud_event
from tests.http.test_events_ingestion import dead_letters


@pytest.fixture(scope="module")
async def cached(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, EntityCache]]:
    """An app with its in-process cache on (to count invalidations) and a client of it."""
    update = {"cache_enabled": True, "cache_namespace": f"c360test-{uuid.uuid4().hex[:12]}"}
    async with running_app(settings.model_copy(update=update)) as (app, http):
        cache = app.state.connections.cache
        assert cache is not None
        yield http, cache


@pytest.fixture
def http(cached: tuple[httpx.AsyncClient, EntityCache]) -> httpx.AsyncClient:
    return cached[0]


def invalidations(cache: EntityCache) -> int:
    return sum(n for (_, event), n in cache.counts.items() if event == INVALIDATION)


async def publish(http: httpx.AsyncClient, *events: dict[str, Any]) -> httpx.Response:
    if len(events) == 1:
        return await http.post("/events", json=events[0], headers=PUBLISHER | {"content-type": CE})
    return await http.post(
        "/events", json=list(events), headers=PUBLISHER | {"content-type": BATCH}
    )


async def accepted(http: httpx.AsyncClient, event: dict[str, Any]) -> None:
    response = await publish(http, event)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1


async def refused(
    cached: tuple[httpx.AsyncClient, EntityCache],
    connections: Connections,
    event: dict[str, Any],
) -> str:
    """Publish an event that must be refused; returns its reason, having checked that it was
    dead-lettered with it, that nothing reached an outbox and that no cache entry was
    invalidated."""
    http, cache = cached
    before = invalidations(cache)
    response = await publish(http, event)
    assert response.status_code == 400, response.text
    [result] = response.json()["results"]
    assert (result["id"], result["status"]) == (event["id"], "rejected")
    [reason] = result["reasons"]
    [letter] = [d for d in await dead_letters(connections) if d.event_id == event["id"]]
    assert (letter.reasons, letter.payload) == ([reason], event)
    assert not await in_an_outbox(connections, event["id"])
    assert invalidations(cache) == before
    return str(reason)


async def in_an_outbox(connections: Connections, event_id: str) -> bool:
    table = models.table(models.OutboxEvent)
    async with connections.engine.connect() as sql:
        row = (await sql.execute(select(table.c.id).where(table.c.event_id == event_id))).first()
    return row is not None or bool(await in_mongo_outbox(db=connections.db, event_ids=[event_id]))


async def order(connections: Connections, order_id: int) -> OrderRecord:
    async with connections.engine.connect() as sql:
        [record] = await orders_by_ids(connection=sql, ids=[order_id])
    assert record is not None
    return record


async def ticket(connections: Connections, ticket_id: str) -> dict[str, Any]:
    found: dict[str, Any] | None = await connections.db.tickets.find_one({"_id": ticket_id})
    assert found is not None
    return found


def status_change(subject: int, named_by: str, owner: int, status: str) -> dict[str, Any]:
    """An order.status_changed event about `owner`'s first order, named by id or number."""
    names = {"order_id": str(owner * 1000)} if named_by == "id" else {"number": f"T-{owner}-0"}
    return cloud_event("order.status_changed", subject, names | {"status": status})


def ticket_change(subject: int, owner: int, status: str) -> dict[str, Any]:
    """A ticket.status_changed event about `owner`'s ticket."""
    data = {"ticket_id": f"TT-{owner}", "status": status, "assignee": "tech-9", "note": "on it"}
    return cloud_event("ticket.status_changed", subject, data)


def placed(subject: int, order_id: int, number: str) -> dict[str, Any]:
    """An order.placed event of one line."""
    return cloud_event(
        "order.placed",
        subject,
        {
            "order_id": str(order_id),
            "number": number,
            "channel": "WEB",
            "currency": "EUR",
            "total": "12.50",
            "placed_at": dt.datetime.now(dt.UTC).isoformat(),
            "lines": [{"sku": "SKU-00003", "quantity": 1, "unit_price": "12.50"}],
        },
    )


def not_the_subjects(entity: str, name: str, subject: int) -> str:
    return (
        f"cannot be applied: {entity} {name} does not belong to customer {subject}, the "
        f"event's subject ({entity.upper()}_OF_ANOTHER_CUSTOMER)"
    )


@pytest.mark.parametrize("named_by", ["id", "number"])
async def test_an_order_status_change_about_another_customers_order_is_refused(
    cached: tuple[httpx.AsyncClient, EntityCache],
    http: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
    named_by: str,
) -> None:
    mine = await build_customer(connections, vendor_store, orders=1)
    theirs = await build_customer(connections, vendor_store, orders=1)

    reason = await refused(cached, connections, status_change(mine, named_by, theirs, "DELIVERED"))
    assert reason == not_the_subjects("order", f"{theirs * 1000} (T-{theirs}-0)", mine)
    assert (await order(connections, theirs * 1000)).status == "SHIPPED"
    assert (await order(connections, mine * 1000)).status == "SHIPPED"

    # Its own customer's event about it applies.
    await accepted(http, status_change(theirs, named_by, theirs, "DELIVERED"))
    assert (await order(connections, theirs * 1000)).status == "DELIVERED"


async def test_an_order_status_change_naming_two_orders_is_refused(
    cached: tuple[httpx.AsyncClient, EntityCache],
    connections: Connections,
    vendor_store: VendorStore,
) -> None:
    mine = await build_customer(connections, vendor_store, orders=1)
    theirs = await build_customer(connections, vendor_store, orders=1)
    names = {"order_id": str(mine * 1000), "number": f"T-{theirs}-0"}
    event = cloud_event("order.status_changed", mine, names | {"status": "DELIVERED"})

    reason = await refused(cached, connections, event)
    assert reason == (
        f"cannot be applied: order {mine * 1000} does not have number T-{theirs}-0 "
        "(ORDER_NUMBER_MISMATCH)"
    )
    assert [(await order(connections, c * 1000)).status for c in (mine, theirs)] == ["SHIPPED"] * 2


async def test_a_ticket_change_about_another_customers_ticket_is_refused(
    cached: tuple[httpx.AsyncClient, EntityCache],
    http: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
) -> None:
    mine = await build_customer(connections, vendor_store)
    theirs = await build_customer(connections, vendor_store)
    before = await ticket(connections, f"TT-{theirs}")

    reason = await refused(cached, connections, ticket_change(mine, theirs, "RESOLVED"))
    assert reason == not_the_subjects("ticket", f"TT-{theirs}", mine)
    assert await ticket(connections, f"TT-{theirs}") == before
    assert await connections.db.tickets.count_documents({"customer_id": mine}) == 1

    await accepted(http, ticket_change(theirs, theirs, "RESOLVED"))
    after = await ticket(connections, f"TT-{theirs}")
    assert (after["status"], after["assignee"], len(after["history"])) == ("RESOLVED", "tech-9", 2)
    # A ticket c360 has not seen is still opened for the event's subject.
    await accepted(http, ticket_change(mine, mine + 10_000_000, "OPEN"))
    assert (await ticket(connections, f"TT-{mine + 10_000_000}"))["customer_id"] == mine


@pytest.mark.parametrize("taken", ["id", "number"])
async def test_an_order_placed_with_another_customers_order_id_or_number_is_refused(
    cached: tuple[httpx.AsyncClient, EntityCache],
    http: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
    taken: str,
) -> None:
    mine = await build_customer(connections, vendor_store, orders=0)
    theirs = await build_customer(connections, vendor_store, orders=1)
    order_id, number = mine * 1000 + 7, f"WEB-{mine}-7"
    if taken == "id":
        order_id = theirs * 1000
    else:
        number = f"T-{theirs}-0"
    before = await order(connections, theirs * 1000)

    reason = await refused(cached, connections, placed(mine, order_id, number))
    assert reason == not_the_subjects("order", f"{order_id} ({number})", mine)
    assert await order(connections, theirs * 1000) == before
    async with connections.engine.connect() as sql:
        table = models.table(models.Order)
        mine_now = (await sql.execute(select(table.c.id).where(table.c.customer_id == mine))).all()
    assert mine_now == []

    await accepted(http, placed(mine, mine * 1000 + 8, f"WEB-{mine}-8"))
    assert (await order(connections, mine * 1000 + 8)).customer_id == mine


async def test_an_order_placed_again_is_a_duplicate_or_refused(
    cached: tuple[httpx.AsyncClient, EntityCache],
    http: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
) -> None:
    cid = await build_customer(connections, vendor_store, orders=0)
    event = placed(cid, cid * 1000 + 1, f"WEB-{cid}-1")
    await accepted(http, event)

    # The same event again (delivery is at least once) is a duplicate, not an error.
    again = await publish(http, event)
    assert again.status_code == 202, again.text
    assert again.json()["duplicates"] == 1
    # Another event placing the same order is refused.
    reason = await refused(cached, connections, placed(cid, cid * 1000 + 1, f"WEB-{cid}-1"))
    assert reason == (
        f"cannot be applied: customer {cid} has order {cid * 1000 + 1} (WEB-{cid}-1) already "
        "(ORDER_EXISTS)"
    )


async def test_one_order_placed_for_two_customers_at_once_goes_to_one(
    http: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    a = await build_customer(connections, vendor_store, orders=0)
    b = await build_customer(connections, vendor_store, orders=0)
    order_id, number = a * 1000 + 1, f"WEB-{a}-1"
    # Two subjects: the endpoint applies their events concurrently.
    response = await publish(http, placed(a, order_id, number), placed(b, order_id, number))
    assert response.status_code == 400, response.text
    results = response.json()["results"]
    owner = (await order(connections, order_id)).customer_id
    won, lost = (0, 1) if owner == a else (1, 0)
    assert results[won]["status"] == "accepted"
    assert results[lost]["status"] == "rejected"
    other = b if owner == a else a
    assert results[lost]["reasons"] == [not_the_subjects("order", f"{order_id} ({number})", other)]


async def test_after_a_merge_the_survivor_owns_what_the_merged_customer_had(
    cached: tuple[httpx.AsyncClient, EntityCache],
    http: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
) -> None:
    a = await build_customer(connections, vendor_store, orders=1)
    b = await build_customer(connections, vendor_store, orders=1)
    stranger = await build_customer(connections, vendor_store, orders=0)
    record, _ = await merges.merge_customers(
        connections.changes, survivor_id=a, merged_id=b, merged_by="t"
    )

    # The merged customer's order and ticket are the survivor's now: an event may name them by
    # either customer, and the survivor's own by the merged customer's old id too.
    await accepted(http, status_change(b, "id", b, "DELIVERED"))
    await accepted(http, status_change(a, "number", a, "DELIVERED"))
    await accepted(http, ticket_change(a, b, "PENDING"))
    await accepted(http, ticket_change(b, a, "PENDING"))
    assert (await order(connections, b * 1000)).status == "DELIVERED"
    assert [(await ticket(connections, f"TT-{c}"))["status"] for c in (a, b)] == ["PENDING"] * 2
    # Never a third customer's.
    reason = await refused(cached, connections, status_change(stranger, "id", b, "RETURNED"))
    assert reason == not_the_subjects("order", f"{b * 1000} (T-{b}-0)", stranger)
    reason = await refused(cached, connections, ticket_change(stranger, b, "RESOLVED"))
    assert reason == not_the_subjects("ticket", f"TT-{b}", stranger)

    # Unmerged, each has its own again.
    await merges.unmerge_customers(connections.changes, merge_id=record.id, unmerged_by="t")
    reason = await refused(cached, connections, status_change(a, "id", b, "RETURNED"))
    assert reason == not_the_subjects("order", f"{b * 1000} (T-{b}-0)", a)
    reason = await refused(cached, connections, ticket_change(a, b, "RESOLVED"))
    assert reason == not_the_subjects("ticket", f"TT-{b}", a)
    assert (await order(connections, b * 1000)).status == "DELIVERED"
    assert (await ticket(connections, f"TT-{b}"))["status"] == "PENDING"


async def test_the_readmes_example_names_a_ticket_of_its_subject(connections: Connections) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    [body] = re.findall(r"curl -s http://127\.0\.0\.1:8000/events .*?-d '(\{.*?\})'", readme, re.S)
    example = json.loads(body)
    # The tests seed the demo's first customers with the demo's generator and seed.
    found = await connections.db.tickets.find_one({"_id": example["data"]["ticket_id"]})
    assert found is not None and str(found["customer_id"]) == example["subject"]


# The data fields of upstream event types that name an entity, and what c360 does about it. A
# schema that gains such a field needs an owner check in `domain` (and a test
# here) before it joins this list.
NAMED = {
    "order.placed": {"order_id", "number"},  # must be new, or the subject's own: ORDER_EXISTS
    "order.status_changed": {"order_id", "number"},  # the subject's (or its survivor's)
    "ticket.status_changed": {"ticket_id"},  # the subject's, or new
    "cart.abandoned": {"cart_id"},  # kept as an attribute of a new interaction: names nothing
}


def test_every_field_naming_an_entity_is_checked() -> None:
    registry = SchemaRegistry()
    for type in APPLIERS:
        properties = registry.schema(type)["properties"]
        named = {name for name in properties if name.endswith("_id") or name == "number"}
        assert named == NAMED.get(type, set()), type
