"""Upstream events, ingested over HTTP, change the stores once and show in the graph."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx

from api.connections import Connections
from sources.thirdparty.simulator import VendorStore
from tests.auth import PUBLISHER
from tests.builders import build_customer

CE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def cloud_event(type: str, subject: int, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": extra.get("id") or str(uuid.uuid4()),
        "source": "urn:test:erp",
        "type": type,
        "subject": str(subject),
        "time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }


async def view(client: httpx.AsyncClient, cid: int, fields: str) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": f'{{ customer(id: "{cid}") {{ {fields} }} }}'}
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    customer: dict[str, Any] = body["data"]["customer"]
    return customer


async def test_every_event_type_is_applied_to_its_store(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store, orders=1)
    new_order = str(cid * 1000 + 500)
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    events = [
        cloud_event("customer.contact_changed", cid, {"email": f"ce.{cid}@example.com"}),
        cloud_event(
            "customer.address_changed",
            cid,
            {
                "kind": "SHIPPING",
                "line1": "9 Dock Road",
                "city": "Hamburg",
                "postal_code": "20095",
                "country": "DE",
            },
        ),
        cloud_event(
            "order.placed",
            cid,
            {
                "order_id": new_order,
                "number": f"WEB-{new_order}",
                "channel": "WEB",
                "currency": "EUR",
                "total": "25.00",
                "placed_at": now,
                "lines": [{"sku": "SKU-00001", "quantity": 2, "unit_price": "12.50"}],
            },
        ),
        cloud_event("order.status_changed", cid, {"number": f"T-{cid}-0", "status": "DELIVERED"}),
        cloud_event(
            "interaction.recorded",
            cid,
            {"type": "CALL", "channel": "CONTACT_CENTER", "occurred_at": now},
        ),
        cloud_event(
            "cart.abandoned",
            cid,
            {
                "cart_id": "c-1",
                "items": [{"sku": "SKU-00002", "quantity": 1}],
                "value": "9.99",
                "currency": "EUR",
            },
        ),
        cloud_event(
            "ticket.status_changed",
            cid,
            {
                "ticket_id": f"TT-{cid}",
                "status": "PENDING",
                "assignee": "tech-7",
                "eta": "2026-12-01T10:00:00Z",
                "note": "technician assigned",
            },
        ),
        cloud_event("consent.changed", cid, {"channel": "PUSH", "granted": True}),
    ]
    response = await client.post(
        "/events", json=events, headers=PUBLISHER | {"content-type": BATCH}
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(events)

    customer = await view(
        client,
        cid,
        """email addresses { kind city }
        orders(first: 5) { totalCount edges { node { number status total { amount } } } }
        timeline(first: 5) { edges { node { type } } }
        tickets { id status assignee eta }
        profile { consents { channel granted } }""",
    )
    assert customer["email"] == f"ce.{cid}@example.com"
    assert {"kind": "SHIPPING", "city": "Hamburg"} in customer["addresses"]
    orders = {e["node"]["number"]: e["node"] for e in customer["orders"]["edges"]}
    assert orders[f"WEB-{new_order}"] == {
        "number": f"WEB-{new_order}",
        "status": "PLACED",
        "total": {"amount": "25.00"},
    }
    assert orders[f"T-{cid}-0"]["status"] == "DELIVERED"
    types = [e["node"]["type"] for e in customer["timeline"]["edges"]]
    assert "CALL" in types and "CART_ABANDONED" in types
    [ticket] = customer["tickets"]
    assert (ticket["status"], ticket["assignee"]) == ("PENDING", "tech-7")
    assert {"channel": "PUSH", "granted": True} in customer["profile"]["consents"]


async def test_an_event_seen_before_is_acknowledged_not_applied_twice(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    event = cloud_event(
        "interaction.recorded",
        cid,
        {"type": "CHAT", "channel": "WEB", "occurred_at": "2026-11-01T10:00:00Z"},
    )
    first = await client.post("/events", json=event, headers=PUBLISHER | {"content-type": CE})
    again = await client.post("/events", json=event, headers=PUBLISHER | {"content-type": CE})
    assert first.json()["accepted"] == 1
    assert (again.status_code, again.json()["duplicates"]) == (202, 1)
    customer = await view(client, cid, "timeline(first: 50, types: [CHAT]) { edges { cursor } }")
    assert len(customer["timeline"]["edges"]) == 1


async def test_a_valid_event_for_an_unknown_customer_is_rejected_with_its_reason(
    client: httpx.AsyncClient,
) -> None:
    event = cloud_event("consent.changed", 987654321, {"channel": "SMS", "granted": False})
    response = await client.post("/events", json=event, headers=PUBLISHER | {"content-type": CE})
    assert response.status_code == 400
    [result] = response.json()["results"]
    assert result["status"] == "rejected"
    assert any("987654321" in reason for reason in result["reasons"])


async def test_an_event_holding_a_nul_character_is_rejected_with_its_reason(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    # PostgreSQL text and MongoDB keys cannot hold NUL: applied, it failed in the store (503,
    # "retry the request", for an event no retry can apply).
    cid = await build_customer(connections, vendor_store, orders=0, interactions=0)
    contact = cloud_event("customer.contact_changed", cid, {"email": "\x00@example.com"})
    interaction = cloud_event(
        "interaction.recorded",
        cid,
        {
            "type": "CALL",
            "channel": "PHONE",
            "occurred_at": "2026-06-01T10:00:00Z",
            "attributes": {"k\x00": "v"},
        },
    )
    for event in (contact, interaction):
        response = await client.post(
            "/events", json=event, headers=PUBLISHER | {"content-type": CE}
        )
        assert response.status_code == 400, response.text
        [result] = response.json()["results"]
        assert result["status"] == "rejected"
        assert any("NUL character (U+0000)" in reason for reason in result["reasons"])
    assert (await view(client, cid, "email"))["email"] == f"test.{cid}@example.com"
