"""Merging two records of one person and undoing it, through the graph: what moves, what stays,
the record of who did it, the events, the errors, the cache, and who may."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from bson import ObjectId
from sqlalchemy import select

import domain
from api.connections import Connections
from api.settings import Settings
from domain.principal import Role
from sources.events.registry import SchemaRegistry
from sources.sql import models
from sources.thirdparty.simulator import VendorStore
from tests.auth import PUBLISHER, bearer
from tests.builders import build_customer
from tests.conftest import running_app
from tests.queries import graphql

MERGE = """mutation($survivor: ID!, $merged: ID!) {
  mergeCustomers(survivorId: $survivor, mergedId: $merged) { __typename
    ... on MergeCustomersSuccess { eventIds merge { ...merge } }
    ... on MergeCustomersError { code message field } } }
fragment merge on CustomerMerge {
  id mergedBy mergedAt unmergedBy unmergedAt
  moved { orders interactions tickets identities }
  returned { orders interactions tickets identities }
  survivor { id status }
  merged { id status mergedInto { id } } }"""
UNMERGE = """mutation($id: ID!) { unmergeCustomers(mergeId: $id) { __typename
    ... on UnmergeCustomersSuccess { eventIds merge { ...merge } }
    ... on UnmergeCustomersError { code message field } } }
fragment merge on CustomerMerge {
  id mergedBy unmergedBy unmergedAt
  moved { orders interactions tickets identities }
  returned { orders interactions tickets identities }
  survivor { id status }
  merged { id status mergedInto { id } } }"""
VIEW = """query($id: ID!) { customer(id: $id) {
  id status email mergedInto { id }
  orders(first: 50) { totalCount edges { node { id number } } }
  timeline(first: 50) { edges { node { id type } } }
  tickets { id status }
  profile { identities { type value } consents { channel granted } }
} }"""


async def run(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    body = await graphql(client, query, variables, headers)
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def view(client: httpx.AsyncClient, customer_id: int) -> dict[str, Any]:
    customer: dict[str, Any] = (await run(client, VIEW, {"id": str(customer_id)}))["customer"]
    return customer


async def merge(client: httpx.AsyncClient, survivor: int, merged: int) -> dict[str, Any]:
    result: dict[str, Any] = (
        await run(client, MERGE, {"survivor": str(survivor), "merged": str(merged)})
    )["mergeCustomers"]
    return result


async def unmerge(client: httpx.AsyncClient, merge_id: str) -> dict[str, Any]:
    result: dict[str, Any] = (await run(client, UNMERGE, {"id": merge_id}))["unmergeCustomers"]
    return result


async def two_customers(connections: Connections, vendors: VendorStore) -> tuple[int, int]:
    """A survivor (two orders, three interactions) and a customer to merge into it (one order,
    two interactions, a loyalty number besides its CRM id)."""
    survivor = await build_customer(connections, vendors, orders=2, interactions=3)
    merged = await build_customer(connections, vendors, orders=1, interactions=2)
    await connections.db.profiles.update_one(
        {"_id": merged},
        {"$push": {"identities": {"type": "LOYALTY_NUMBER", "value": f"L{merged}"}}},
    )
    return survivor, merged


async def publish(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    """POST one upstream CloudEvent to /events, as a publisher."""
    return await client.post(
        "/events",
        json=event,
        headers={"content-type": "application/cloudevents+json", **PUBLISHER},
    )


def ids(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in connection["edges"]]


async def test_merge_moves_everything_and_unmerge_restores_both(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    a, b = await two_customers(connections, vendor_store)
    before_a, before_b = await view(client, a), await view(client, b)

    merged = await merge(client, a, b)
    assert merged["__typename"] == "MergeCustomersSuccess", merged
    record = merged["merge"]
    assert record["moved"] == {"orders": 1, "interactions": 2, "tickets": 1, "identities": 2}
    assert record["mergedBy"] == "test-agent"
    assert record["unmergedAt"] is None and record["returned"] is None
    assert record["survivor"] == {"id": str(a), "status": "ACTIVE"}
    assert record["merged"] == {"id": str(b), "status": "MERGED", "mergedInto": {"id": str(a)}}
    assert len(set(merged["eventIds"])) == 2

    survivor = await view(client, a)
    assert survivor["orders"]["totalCount"] == 3
    assert set(ids(survivor["orders"])) == set(ids(before_a["orders"]) + ids(before_b["orders"]))
    assert set(ids(survivor["timeline"])) == set(
        ids(before_a["timeline"]) + ids(before_b["timeline"])
    )
    assert {t["id"] for t in survivor["tickets"]} == {f"TT-{a}", f"TT-{b}"}
    assert survivor["profile"]["identities"] == [
        {"type": "CRM_ID", "value": f"CRM-{a}"},
        {"type": "CRM_ID", "value": f"CRM-{b}"},
        {"type": "LOYALTY_NUMBER", "value": f"L{b}"},
    ]
    # The merged id now lands on the survivor.
    assert await view(client, b) == survivor
    async with connections.engine.connect() as sql:
        row = (
            await sql.execute(
                select(models.CustomerMerge.__table__).where(
                    models.CustomerMerge.id == int(record["id"])
                )
            )
        ).one()
    assert (row.survivor_id, row.merged_id, row.merged_by) == (a, b, "test-agent")
    assert abs(row.merged_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert row.moved["state"] == "MERGED"
    assert row.moved["orders"] == [b * 1000]
    assert sorted(row.moved["interactions"]) == sorted(ids(before_b["timeline"]))
    assert row.moved["tickets"] == [f"TT-{b}"]

    # Meanwhile the survivor gains an order, an interaction, a ticket and an identity.
    order_id = a * 1000 + 99
    await domain.place_order(
        connections.changes,
        customer_id=a,
        order_id=order_id,
        number=f"T-{a}-99",
        channel="WEB",
        currency="EUR",
        total_minor=1250,
        lines=[{"sku": "SKU-00001", "quantity": 1, "unit_price_minor": 1250}],
        placed_at=dt.datetime.now(dt.UTC),
    )
    interaction = ObjectId()
    await domain.record_interaction(
        connections.changes,
        customer_id=a,
        interaction={
            "_id": interaction,
            "customer_id": a,
            "type": "CALL",
            "channel": "CONTACT_CENTER",
            "occurred_at": dt.datetime.now(dt.UTC),
            "attributes": {},
        },
    )
    ticket, _ = await domain.open_ticket(
        connections.changes, customer_id=a, subject="Merged twice?", priority="LOW", channel="PHONE"
    )
    await connections.db.profiles.update_one(
        {"_id": a}, {"$push": {"identities": {"type": "DEVICE_ID", "value": f"dev-{a}"}}}
    )

    undone = await unmerge(client, record["id"])
    assert undone["__typename"] == "UnmergeCustomersSuccess", undone
    assert undone["merge"]["returned"] == record["moved"]
    assert undone["merge"]["unmergedBy"] == "test-agent"
    assert undone["merge"]["merged"] == {"id": str(b), "status": "ACTIVE", "mergedInto": None}
    assert len(set(undone["eventIds"])) == 2

    assert await view(client, b) == before_b
    after_a = await view(client, a)
    assert after_a["orders"]["totalCount"] == before_a["orders"]["totalCount"] + 1
    assert after_a["orders"]["edges"][0]["node"]["id"] == str(order_id)
    assert after_a["orders"]["edges"][1:] == before_a["orders"]["edges"]
    assert ids(after_a["timeline"]) == [str(interaction), *ids(before_a["timeline"])]
    assert after_a["tickets"][0]["id"] == ticket and after_a["tickets"][1:] == before_a["tickets"]
    assert after_a["profile"]["identities"] == [
        *before_a["profile"]["identities"],
        {"type": "DEVICE_ID", "value": f"dev-{a}"},
    ]

    again = await unmerge(client, record["id"])
    assert (again["code"], again["field"]) == ("ALREADY_UNMERGED", "mergeId")


async def test_a_survivor_without_a_profile_gets_one_and_loses_it_again(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    a, b = await two_customers(connections, vendor_store)
    await connections.db.profiles.delete_one({"_id": a})
    before_a, before_b = await view(client, a), await view(client, b)
    assert before_a["profile"] is None

    record = (await merge(client, a, b))["merge"]
    profile = (await view(client, a))["profile"]
    assert profile["identities"] == before_b["profile"]["identities"]
    # The merged record keeps its other profile data (its consents, say).
    merged = await connections.db.profiles.find_one({"_id": b})
    assert merged is not None and merged["identities"] == [] and merged["consents"]

    await unmerge(client, record["id"])
    assert await view(client, a) == before_a
    assert await view(client, b) == before_b


async def test_identities_the_survivor_had_stay_with_it(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    a, b = await two_customers(connections, vendor_store)
    shared = {"type": "CRM_ID", "value": f"CRM-{b}"}
    await connections.db.profiles.update_one({"_id": a}, {"$push": {"identities": shared}})
    before_a, before_b = await view(client, a), await view(client, b)

    record = (await merge(client, a, b))["merge"]
    identities = (await view(client, a))["profile"]["identities"]
    assert identities.count(shared) == 1 and len(identities) == 3
    await unmerge(client, record["id"])
    assert (await view(client, a))["profile"] == before_a["profile"]
    assert (await view(client, b))["profile"] == before_b["profile"]


async def test_refusals_say_why(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    a, b = await two_customers(connections, vendor_store)
    c = await build_customer(connections, vendor_store)
    cases = [
        ((a, a), "SAME_CUSTOMER", "mergedId"),
        ((a, 999_999_999), "CUSTOMER_NOT_FOUND", "mergedId"),
        ((999_999_999, a), "CUSTOMER_NOT_FOUND", "survivorId"),
    ]
    for (survivor, merged), code, field in cases:
        refused = await merge(client, survivor, merged)
        assert refused["__typename"] == "MergeCustomersError"
        assert (refused["code"], refused["field"]) == (code, field)
        assert refused["message"]
    first = (await merge(client, a, b))["merge"]
    for (survivor, merged), field in (((c, b), "mergedId"), ((b, c), "survivorId")):
        refused = await merge(client, survivor, merged)
        assert (refused["code"], refused["field"]) == ("ALREADY_MERGED", field)
        assert f"merged into customer {a}" in refused["message"]

    # The survivor merged away in turn: that merge is undone first.
    second = (await merge(client, c, a))["merge"]
    refused = await unmerge(client, first["id"])
    assert refused["code"] == "SURVIVOR_MERGED" and str(c) in refused["message"]
    assert (await unmerge(client, second["id"]))["__typename"] == "UnmergeCustomersSuccess"
    assert (await unmerge(client, first["id"]))["__typename"] == "UnmergeCustomersSuccess"
    assert (await unmerge(client, first["id"]))["code"] == "ALREADY_UNMERGED"
    assert (await unmerge(client, "999999999"))["code"] == "MERGE_NOT_FOUND"
    assert (await unmerge(client, "not-an-id"))["code"] == "MERGE_NOT_FOUND"
    # Unmerged, a customer may be merged again; the old merge stays undone.
    third = await merge(client, c, b)
    assert third["__typename"] == "MergeCustomersSuccess"
    assert (await unmerge(client, first["id"]))["code"] == "ALREADY_UNMERGED"


async def test_both_customers_events_are_in_the_outbox_and_follow_their_schemas(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    a, b = await two_customers(connections, vendor_store)
    merged = await merge(client, a, b)
    undone = await unmerge(client, merged["merge"]["id"])
    table = models.OutboxEvent.__table__
    async with connections.engine.connect() as sql:
        rows = (
            await sql.execute(
                select(table.c.event_id, table.c.type, table.c.subject, table.c.payload).where(
                    table.c.event_id.in_(merged["eventIds"] + undone["eventIds"])
                )
            )
        ).all()
    assert sorted((r.type, r.subject) for r in rows) == sorted(
        (type, str(cid)) for type in ("customer.merged", "customer.unmerged") for cid in (a, b)
    )
    registry = SchemaRegistry()
    for row in rows:
        assert registry.validate(row.payload) == [], row.payload
    data = next(r.payload["data"] for r in rows if r.type == "customer.merged")
    assert data == {
        "merge_id": merged["merge"]["id"],
        "survivor_id": str(a),
        "merged_id": str(b),
        "merged_by": "test-agent",
        "moved": {"orders": 1, "interactions": 2, "tickets": 1, "identities": 2},
    }


@pytest.mark.parametrize(
    "headers",
    [
        bearer(Role.ANALYST),
        bearer(Role.SERVICE, scopes=["customers:read", "pii:read"]),
        pytest.param("customer", id="customer"),
    ],
)
async def test_only_agents_and_admins_may_merge(
    client: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
    headers: dict[str, str] | str,
) -> None:
    a, b = await two_customers(connections, vendor_store)
    if headers == "customer":
        headers = bearer(Role.CUSTOMER, subject=str(a))
    assert isinstance(headers, dict)
    variables = {"survivor": str(a), "merged": str(b)}
    response = await client.post(
        "/graphql", json={"query": MERGE, "variables": variables}, headers=headers
    )
    body = response.json()
    assert body["data"] == {"mergeCustomers": None}
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    response = await client.post(
        "/graphql", json={"query": UNMERGE, "variables": {"id": "1"}}, headers=headers
    )
    assert response.json()["data"] == {"unmergeCustomers": None}
    assert (await view(client, b))["id"] == str(b)
    admin = await run(client, MERGE, variables, headers=bearer(Role.ADMIN, subject="an-admin"))
    assert admin["mergeCustomers"]["merge"]["mergedBy"] == "an-admin"


async def test_the_cache_serves_no_pre_merge_view(
    cached_settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    a, b = await two_customers(connections, vendor_store)
    async with running_app(cached_settings) as (_, http):
        before_a, before_b = await view(http, a), await view(http, b)
        assert await view(http, a) == before_a  # now served from the cache
        record = (await merge(http, a, b))["merge"]
        survivor = await view(http, a)
        assert survivor["orders"]["totalCount"] == 3
        assert len(survivor["timeline"]["edges"]) == 5 and len(survivor["tickets"]) == 2
        assert len(survivor["profile"]["identities"]) == 3
        assert await view(http, b) == survivor
        await unmerge(http, record["id"])
        assert await view(http, a) == before_a
        assert await view(http, b) == before_b


async def test_upstream_systems_cannot_send_merge_events(client: httpx.AsyncClient) -> None:
    event = {
        "specversion": "1.0",
        "id": "crm-merge-1",
        "source": "urn:test:crm",
        "type": "customer.merged",
        "subject": "1",
        "time": "2026-11-22T09:30:00Z",
        "data": {
            "merge_id": "1",
            "survivor_id": "1",
            "merged_id": "2",
            "merged_by": "crm",
            "moved": {"orders": 0, "interactions": 0, "tickets": 0, "identities": 0},
        },
    }
    response = await publish(client, event)
    assert response.status_code == 400, response.text
    [result] = response.json()["results"]
    assert result["status"] == "rejected" and "customer.merged" in result["reasons"][0]


async def test_a_merged_customer_is_never_written_to(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    a, b = await two_customers(connections, vendor_store)
    await merge(client, a, b)

    # A client naming the merged customer is told where to make the change instead.
    contact = """mutation($input: UpdateCustomerContactInput!) {
      updateCustomerContact(input: $input) { __typename
        ... on UpdateCustomerContactError { code message field } } }"""
    refused = await run(client, contact, {"input": {"customerId": str(b), "lastName": "X"}})
    assert refused["updateCustomerContact"] == {
        "__typename": "UpdateCustomerContactError",
        "code": "CUSTOMER_MERGED",
        # The survivor goes unnamed (to a customer principal it is another person's record).
        "message": f"customer {b} was merged into another customer: make the change on the "
        "survivor (its `mergedInto`)",
        "field": "customerId",
    }
    interaction = """mutation($input: RecordInteractionInput!) {
      recordInteraction(input: $input) { __typename
        ... on RecordInteractionError { code } } }"""
    call = {"customerId": str(b), "type": "CALL", "channel": "PHONE"}
    refused = await run(client, interaction, {"input": call})
    assert refused["recordInteraction"] == {
        "__typename": "RecordInteractionError",
        "code": "CUSTOMER_MERGED",
    }

    # An upstream system still knows the old id: its events change the survivor.
    event = {
        "specversion": "1.0",
        "id": f"shop-{b}-visit",
        "source": "urn:test:shop",
        "type": "interaction.recorded",
        "subject": str(b),
        "time": "2026-11-22T09:30:00Z",
        "data": {
            "type": "STORE_VISIT",
            "channel": "STORE",
            "occurred_at": "2026-11-22T09:30:00Z",
            "attributes": {"visit": f"v{b}"},
        },
    }
    response = await publish(client, event)
    assert response.status_code == 202, response.text
    [visit] = await connections.db.interactions.find({"attributes.visit": f"v{b}"}).to_list()
    assert visit["customer_id"] == a
    assert str(visit["_id"]) in ids((await view(client, a))["timeline"])

    # But not its contact details: which record's email the person keeps is a person's choice.
    contact_event = {
        **event,
        "id": f"crm-{b}-contact",
        "type": "customer.contact_changed",
        "data": {"email": f"new.{b}@example.com"},
    }
    response = await publish(client, contact_event)
    assert response.status_code == 400, response.text
    [result] = response.json()["results"]
    assert result["status"] == "rejected" and "(CUSTOMER_MERGED)" in result["reasons"][0]
    assert (await view(client, a))["email"] == f"test.{a}@example.com"
