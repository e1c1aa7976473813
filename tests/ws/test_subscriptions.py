"""A real WebSocket client (graphql-transport-ws) against the live server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from api.connections import Connections
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer

SUBSCRIBE = """subscription($id: ID!, $after: ID) {
  customerChanged(customerId: $id, after: $after) { eventId eventType customer { id email phone } }
}"""
CONTACT = """mutation($input: UpdateCustomerContactInput!) { updateCustomerContact(input: $input) {
  __typename } }"""


@asynccontextmanager
async def graphql_ws(base_url: str) -> AsyncIterator[ClientConnection]:
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        yield ws


async def next_message(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        return message


async def subscribe(ws: ClientConnection, cid: int, after: str | None = None) -> None:
    await ws.send(
        json.dumps(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE, "variables": {"id": str(cid), "after": after}},
            }
        )
    )


async def change_email(base_url: str, cid: int, email: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": CONTACT,
                "variables": {"input": {"customerId": str(cid), "email": email}},
            },
        )
    assert response.json()["data"]["updateCustomerContact"]["__typename"] == (
        "UpdateCustomerContactSuccess"
    )


async def test_subscribe_mutate_receive_then_resume_after_a_disconnect(
    live_server: str, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    async with graphql_ws(live_server) as ws:
        await subscribe(ws, cid)
        await asyncio.sleep(0.2)  # subscribed before the change
        await change_email(live_server, cid, f"first.{cid}@example.com")
        message = await next_message(ws)
        assert message["type"] == "next", message
        change = message["payload"]["data"]["customerChanged"]
        assert change["eventType"] == "customer.contact_changed"
        assert change["customer"]["email"] == f"first.{cid}@example.com"
        seen = change["eventId"]

    # Disconnected: two changes happen meanwhile.
    await change_email(live_server, cid, f"second.{cid}@example.com")
    await change_email(live_server, cid, f"third.{cid}@example.com")
    await asyncio.sleep(1.0)  # published by the relay

    async with graphql_ws(live_server) as ws:
        await subscribe(ws, cid, after=seen)
        emails = []
        for _ in range(2):
            message = await next_message(ws)
            assert message["type"] == "next", message
            emails.append(message["payload"]["data"]["customerChanged"]["customer"]["email"])
        # Each change is delivered once, in order; the customer is read fresh for each event,
        # so both show the latest email (the change events themselves are distinct).
        assert emails == [f"third.{cid}@example.com"] * 2
        await change_email(live_server, cid, f"fourth.{cid}@example.com")
        message = await next_message(ws)
        assert message["payload"]["data"]["customerChanged"]["customer"]["email"] == (
            f"fourth.{cid}@example.com"
        )


async def test_resuming_after_an_unknown_event_says_so(live_server: str) -> None:
    async with graphql_ws(live_server) as ws:
        await subscribe(ws, 1, after="no-such-event")
        message = await next_message(ws)
        # An error raised by a running subscription arrives as `next` with `errors`.
        assert message["type"] == "next"
        [error] = message["payload"]["errors"]
        assert error["extensions"]["code"] == "EVENT_NOT_RETAINED"
        assert (await next_message(ws))["type"] == "complete"


async def test_a_socket_that_never_says_hello_is_closed(live_server: str, settings: Any) -> None:
    url = live_server.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        try:
            await asyncio.wait_for(ws.recv(), settings.websocket_init_timeout + 5)
        except Exception:
            pass
        assert ws.close_code == 4408


async def test_an_ingested_upstream_event_reaches_the_subscriber(
    live_server: str, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    event = {
        "specversion": "1.0",
        "id": f"erp-{cid}-1",
        "source": "urn:test:roadside",
        "type": "ticket.status_changed",
        "subject": str(cid),
        "time": "2026-11-22T09:00:00Z",
        "data": {
            "ticket_id": f"TT-{cid}",
            "status": "PENDING",
            "assignee": "tech-3",
            "eta": "2026-11-22T10:30:00Z",
        },
    }
    async with graphql_ws(live_server) as ws:
        await subscribe(ws, cid)
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=live_server) as http:
            response = await http.post(
                "/events", json=event, headers={"content-type": "application/cloudevents+json"}
            )
        assert response.status_code == 202, response.text
        message = await next_message(ws)
        change = message["payload"]["data"]["customerChanged"]
        assert (change["eventId"], change["eventType"]) == (event["id"], "ticket.status_changed")
