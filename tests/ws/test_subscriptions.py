"""A real WebSocket client (graphql-transport-ws) against the live server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect

from api.app import create_app
from api.connections import Connections
from api.settings import Settings
from sources.events.bus import NotRetainedError
from sources.events.hub import Hub
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT, PUBLISHER
from tests.builders import build_customer
from tests.conftest import Simulator, serving
from tests.waits import relayed, subscribed

SUBSCRIBE = """subscription($id: ID!, $after: ID) {
  customerChanged(customerId: $id, after: $after) { eventId eventType customer { id email phone } }
}"""
CONTACT = """mutation($input: UpdateCustomerContactInput!) { updateCustomerContact(input: $input) {
  __typename } }"""


@asynccontextmanager
async def graphql_ws(base_url: str) -> AsyncIterator[ClientConnection]:
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": AGENT}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        yield ws


async def next_message(ws: ClientConnection) -> dict[str, Any]:
    while True:
        async with asyncio.timeout(10):
            message: dict[str, Any] = json.loads(await ws.recv())
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
    async with httpx.AsyncClient(base_url=base_url, headers=AGENT) as http:
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
        await subscribed(connections.hub, cid)
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
    await relayed(connections)

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


async def _refused_after(base_url: str, cid: int, after: str) -> str:
    """The code a subscription resuming after `after` ends with."""
    async with graphql_ws(base_url) as ws:
        await subscribe(ws, cid, after=after)
        message = await next_message(ws)
        # An error raised by a running subscription arrives as `next` with `errors`.
        assert message["type"] == "next", message
        [error] = message["payload"]["errors"]
        assert (await next_message(ws))["type"] == "complete"
        code: str = error["extensions"]["code"]
        return code


async def test_resuming_after_an_id_never_issued_says_so(live_server: str) -> None:
    assert await _refused_after(live_server, 1, "no-such-event") == "EVENT_UNKNOWN"


async def _event_ids(base_url: str, cid: int, count: int) -> list[str]:
    """Make `count` contact changes; their event ids, in order."""
    ids = []
    async with httpx.AsyncClient(base_url=base_url, headers=AGENT) as http:
        for n in range(count):
            answer = await http.post(
                "/graphql",
                json={
                    "query": """mutation($input: UpdateCustomerContactInput!) {
                      updateCustomerContact(input: $input) {
                        ... on UpdateCustomerContactSuccess { eventId } } }""",
                    "variables": {
                        "input": {"customerId": str(cid), "email": f"n{n}.{time.time_ns()}@x.io"}
                    },
                },
            )
            ids.append(answer.json()["data"]["updateCustomerContact"]["eventId"])
    return ids


async def test_resuming_after_an_event_aged_out_says_so(
    settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    brief = settings.model_copy(update={"events_retention_seconds": 0.5})
    application = create_app(brief)
    async with application.router.lifespan_context(application), serving(application) as url:
        [old] = await _event_ids(url, cid, 1)
        await asyncio.sleep(1.0)  # past the retention
        assert await _refused_after(url, cid, old) == "EVENT_NOT_RETAINED"


async def _published(app: Starlette, event_id: str) -> None:
    """Wait until the app's relay has put `event_id` on its bus."""
    bus = app.state.connections.bus
    async with asyncio.timeout(10):
        while True:
            try:
                await bus.position_of(event_id)
                return
            except NotRetainedError:
                await asyncio.sleep(0.05)


async def test_embedded_history_outlives_a_restart(
    settings: Settings,
    connections: Connections,
    vendor_store: VendorStore,
    tmp_path_factory: pytest.TempPathFactory,
    only_these_processes_relay: None,
) -> None:
    # No Redis: the in-process bus, whose journal is in the data directory.
    cid = await build_customer(connections, vendor_store)
    embedded = settings.model_copy(
        update={"redis_url": None, "data_dir": tmp_path_factory.mktemp("restart")}
    )
    first = create_app(embedded)
    async with first.router.lifespan_context(first), serving(first) as url:
        resumed_from, missed = await _event_ids(url, cid, 2)
        await _published(first, missed)
    again = create_app(embedded)
    async with again.router.lifespan_context(again), serving(again) as url:
        async with graphql_ws(url) as ws:
            await subscribe(ws, cid, after=resumed_from)
            message = await next_message(ws)
            assert message["type"] == "next", message
            assert message["payload"]["data"]["customerChanged"]["eventId"] == missed


async def test_a_socket_that_never_says_hello_is_closed(live_server: str, settings: Any) -> None:
    url = live_server.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        try:
            async with asyncio.timeout(settings.websocket_init_timeout + 5):
                await ws.recv()
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
        await subscribed(connections.hub, cid)
        async with httpx.AsyncClient(base_url=live_server, headers=AGENT) as http:
            response = await http.post(
                "/events",
                json=event,
                headers=PUBLISHER | {"content-type": "application/cloudevents+json"},
            )
        assert response.status_code == 202, response.text
        message = await next_message(ws)
        change = message["payload"]["data"]["customerChanged"]
        assert (change["eventId"], change["eventType"]) == (event["id"], "ticket.status_changed")


async def start(ws: ClientConnection, query: str, cid: int, hub: Hub) -> None:
    await ws.send(
        json.dumps(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": query, "variables": {"id": str(cid)}},
            }
        )
    )
    await subscribed(hub, cid)


async def test_order_changes_arrive_with_the_order_after_them(
    live_server: str, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store, orders=1)
    query = """subscription($id: ID!) { orderChanged(customerId: $id) {
        eventType order { id status } } }"""
    mutation = """mutation($input: UpdateOrderStatusInput!) { updateOrderStatus(input: $input) {
        __typename } }"""
    async with graphql_ws(live_server) as ws:
        await start(ws, query, cid, connections.hub)
        async with httpx.AsyncClient(base_url=live_server, headers=AGENT) as http:
            await http.post(
                "/graphql",
                json={
                    "query": mutation,
                    "variables": {"input": {"orderId": str(cid * 1000), "status": "DELIVERED"}},
                },
            )
        change = (await next_message(ws))["payload"]["data"]["orderChanged"]
        assert change == {
            "eventType": "order.status_changed",
            "order": {"id": str(cid * 1000), "status": "DELIVERED"},
        }


async def test_customer_activity_shows_interactions_and_ticket_changes(
    live_server: str, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    query = """subscription($id: ID!) { customerActivity(customerId: $id) {
        eventType interaction { type channel } ticket { id status assignee } } }"""
    events = [
        {
            "specversion": "1.0",
            "id": f"call-{cid}",
            "source": "urn:test:cc",
            "type": "interaction.recorded",
            "subject": str(cid),
            "time": "2026-11-22T09:00:00Z",
            "data": {
                "type": "CALL",
                "channel": "CONTACT_CENTER",
                "occurred_at": "2026-11-22T09:00:00Z",
            },
        },
        {
            "specversion": "1.0",
            "id": f"tkt-{cid}",
            "source": "urn:test:cc",
            "type": "ticket.status_changed",
            "subject": str(cid),
            "time": "2026-11-22T09:01:00Z",
            "data": {"ticket_id": f"TT-{cid}", "status": "RESOLVED", "assignee": "agent-2"},
        },
    ]
    async with graphql_ws(live_server) as ws:
        await start(ws, query, cid, connections.hub)
        async with httpx.AsyncClient(base_url=live_server, headers=AGENT) as http:
            response = await http.post(
                "/events",
                json=events,
                headers=PUBLISHER | {"content-type": "application/cloudevents-batch+json"},
            )
        assert response.status_code == 202, response.text
        first = (await next_message(ws))["payload"]["data"]["customerActivity"]
        second = (await next_message(ws))["payload"]["data"]["customerActivity"]
    assert first == {
        "eventType": "interaction.recorded",
        "interaction": {"type": "CALL", "channel": "CONTACT_CENTER"},
        "ticket": None,
    }
    assert second == {
        "eventType": "ticket.status_changed",
        "interaction": None,
        "ticket": {"id": f"TT-{cid}", "status": "RESOLVED", "assignee": "agent-2"},
    }


async def test_a_connection_runs_a_bounded_number_of_subscriptions(
    live_server: str, settings: Any
) -> None:
    limit = settings.websocket_max_subscriptions
    async with graphql_ws(live_server) as ws:
        for n in range(limit + 1):
            await ws.send(
                json.dumps(
                    {
                        "id": str(n),
                        "type": "subscribe",
                        "payload": {"query": SUBSCRIBE, "variables": {"id": "1", "after": None}},
                    }
                )
            )
        message = await next_message(ws)
        assert message["id"] == str(limit)
        [error] = message["payload"]["errors"]
        assert error["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"


async def test_a_source_failing_under_a_subscription_is_a_coded_error(
    live_server: str,
    connections: Connections,
    vendor_store: VendorStore,
    vendor_faults: Simulator,
) -> None:
    cid = await build_customer(connections, vendor_store)
    query = """subscription($id: ID!) { customerChanged(customerId: $id) {
        customer { email loyalty { tier } } } }"""
    vendor_faults.set_faults("loyalty", failure_rate=1.0)
    async with graphql_ws(live_server) as ws:
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": {"id": str(cid)}},
                }
            )
        )
        await subscribed(connections.hub, cid)
        await change_email(live_server, cid, f"coded.{cid}@example.com")
        message = await next_message(ws)
    assert message["type"] == "next", message
    assert message["payload"]["data"]["customerChanged"]["customer"] == {
        "email": f"coded.{cid}@example.com",
        "loyalty": None,
    }
    [error] = message["payload"]["errors"]
    assert error["path"] == ["customerChanged", "customer", "loyalty"]
    assert error["extensions"] == {"code": "SOURCE_UNAVAILABLE", "source": "loyalty"}


async def test_a_document_refused_before_it_runs_is_a_coded_error(live_server: str) -> None:
    async with graphql_ws(live_server) as ws:
        query = 'subscription { customerChanged(customerId: "1") { noSuchField } }'
        await ws.send(json.dumps({"id": "v", "type": "subscribe", "payload": {"query": query}}))
        message = await next_message(ws)
    assert message["type"] == "error"
    [error] = message["payload"]
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
