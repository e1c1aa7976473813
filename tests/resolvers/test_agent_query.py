"""The agent query through real HTTP, checked against what the stores hold."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.connections import Connections
from sources.sql import models
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT
from tests.builders import build_customer
from tests.queries import AGENT_QUERY

JSON = {"content-type": "application/json"}


async def post(
    base_url: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, headers=AGENT) as http:
        response = await http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_agent_query_answers_over_real_http(
    live_server: str, connections: Connections
) -> None:
    body = await post(live_server, AGENT_QUERY, {"id": "7"})
    assert "errors" not in body
    customer = body["data"]["customer"]
    async with AsyncSession(connections.engine) as session:
        row = (
            await session.execute(select(models.Customer).where(models.Customer.id == 7))
        ).scalar_one()
        orders = (
            (await session.execute(select(models.Order).where(models.Order.customer_id == 7)))
            .scalars()
            .all()
        )
    assert customer["id"] == "7"
    assert customer["name"] == f"{row.first_name} {row.last_name}"
    assert customer["email"] == row.email
    page = customer["orders"]
    assert page["totalCount"] == len(orders)
    assert len(page["edges"]) == min(10, len(orders))
    assert page["pageInfo"]["hasNextPage"] == (len(orders) > 10)
    newest = sorted(orders, key=lambda o: (o.placed_at, o.id), reverse=True)[:10]
    assert [e["node"]["number"] for e in page["edges"]] == [o.number for o in newest]
    for edge in page["edges"]:
        assert edge["node"]["lines"], "every seeded order has lines"
        shipped = edge["node"]["status"] in ("SHIPPED", "DELIVERED", "RETURNED")
        assert (edge["node"]["shipment"] is not None) == shipped
    timeline = customer["timeline"]["edges"]
    occurred = [e["node"]["occurredAt"] for e in timeline]
    assert occurred == sorted(occurred, reverse=True) and len(occurred) == 20
    assert all(t["status"] == "OPEN" for t in customer["tickets"])


async def test_unknown_customer_is_null_not_an_error(live_server: str) -> None:
    for unknown in ("999999999", "not-a-number", "-3"):
        body = await post(live_server, AGENT_QUERY, {"id": unknown})
        assert body == {"data": {"customer": None}}


async def test_orders_paginate_with_opaque_cursors_to_the_end(
    live_server: str, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store, orders=7)
    query = """query($id: ID!, $after: String) { customer(id: $id) {
        orders(first: 3, after: $after) { totalCount edges { node { number } }
        pageInfo { hasNextPage hasPreviousPage endCursor } } } }"""
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        body = await post(live_server, query, {"id": str(cid), "after": after})
        page = body["data"]["customer"]["orders"]
        assert page["totalCount"] == 7
        assert page["pageInfo"]["hasPreviousPage"] == (after is not None)
        seen += [e["node"]["number"] for e in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == [f"T-{cid}-{n}" for n in reversed(range(7))]


async def test_orders_filter_by_status(live_server: str) -> None:
    query = """{ customer(id: "3") {
        all: orders(first: 100) { totalCount edges { node { status } } }
        delivered: orders(first: 100, status: DELIVERED) {
            totalCount edges { node { status } } } } }"""
    body = await post(live_server, query)
    customer = body["data"]["customer"]
    statuses = [e["node"]["status"] for e in customer["all"]["edges"]]
    delivered = customer["delivered"]
    assert delivered["totalCount"] == statuses.count("DELIVERED")
    assert {e["node"]["status"] for e in delivered["edges"]} <= {"DELIVERED"}


async def test_page_size_above_the_cap_is_a_clear_error(live_server: str) -> None:
    body = await post(live_server, '{ customer(id: "1") { orders(first: 101) { totalCount } } }')
    # Only the refused connection is null (it is nullable, like every guarded field).
    assert body["data"] == {"customer": {"orders": None}}
    [error] = body["errors"]
    assert error["message"] == "`first` must be between 0 and 100; got 101."
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert error["path"] == ["customer", "orders"]


def _forged(at: str, ident: object) -> str:
    """A cursor shaped like c360's (base64 of `[time, id]`) around a position it never made."""
    return base64.urlsafe_b64encode(orjson.dumps([at, ident])).decode().rstrip("=")


FORGED = {
    "not a cursor": ("timeline", "bm90LWEtY3Vyc29y"),
    # SQLite cannot bind an integer beyond 64 bits (OverflowError), PostgreSQL beyond BIGINT.
    "an order id of 400 digits": ("orders", _forged("2026-01-01T00:00:00+00:00", "9" * 400)),
    "a digit int() cannot read": ("orders", _forged("2026-01-01T00:00:00+00:00", "\u00b2")),
    # c360's positions are aware: a naive time cannot be compared with them.
    "a time without a zone": ("orders", _forged("2026-01-01T00:00:00", "1")),
    # Year 1 at +02:00 is before year 1 in UTC: no datetime holds it.
    "a time with no UTC form": ("orders", _forged("0001-01-01T00:00:00+02:34:48", "1")),
    "a timeline time without a zone": (
        "timeline",
        _forged("2026-01-01T00:00:00", "65f000000000000000000000"),
    ),
}


@pytest.mark.parametrize("case", list(FORGED))
async def test_a_forged_cursor_is_refused_clearly(live_server: str, case: str) -> None:
    connection, cursor = FORGED[case]
    body = await post(
        live_server,
        f'{{ customer(id: "1") {{ {connection}(after: "{cursor}") {{ edges {{ cursor }} }} }} }}',
    )
    assert body["data"] == {"customer": {connection: None}}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert error["path"] == ["customer", connection]
    assert "`after` is not a cursor from this connection" in error["message"]
