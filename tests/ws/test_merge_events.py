"""Subscribers of either customer hear of a merge and of its undoing, over a real WebSocket."""

from __future__ import annotations

import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from api.connections import Connections
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT
from tests.builders import build_customer
from tests.waits import subscribed
from tests.ws.test_subscriptions import graphql_ws, next_message

SUBSCRIBE = """subscription($id: ID!) { customerChanged(customerId: $id) {
  eventType customer { id status mergedInto { id } } } }"""
MERGE = """mutation($survivor: ID!, $merged: ID!) {
  mergeCustomers(survivorId: $survivor, mergedId: $merged) {
    ... on MergeCustomersSuccess { merge { id } } } }"""
UNMERGE = """mutation($id: ID!) { unmergeCustomers(mergeId: $id) { __typename } }"""


async def _subscribe(ws: ClientConnection, customer_id: int) -> None:
    await ws.send(
        json.dumps(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE, "variables": {"id": str(customer_id)}},
            }
        )
    )


async def _change(ws: ClientConnection) -> dict[str, Any]:
    message = await next_message(ws)
    assert message["type"] == "next", message
    change: dict[str, Any] = message["payload"]["data"]["customerChanged"]
    return change


async def test_both_customers_subscribers_hear_of_a_merge_and_an_unmerge(
    live_server: str, connections: Connections, vendor_store: VendorStore
) -> None:
    a = await build_customer(connections, vendor_store)
    b = await build_customer(connections, vendor_store)
    async with graphql_ws(live_server) as on_a, graphql_ws(live_server) as on_b:
        await _subscribe(on_a, a)
        await _subscribe(on_b, b)
        await subscribed(connections.hub, a)
        await subscribed(connections.hub, b)
        async with httpx.AsyncClient(base_url=live_server, headers=AGENT) as http:
            response = await http.post(
                "/graphql",
                json={"query": MERGE, "variables": {"survivor": str(a), "merged": str(b)}},
            )
            merge_id = response.json()["data"]["mergeCustomers"]["merge"]["id"]
            assert await _change(on_a) == {
                "eventType": "customer.merged",
                "customer": {"id": str(a), "status": "ACTIVE", "mergedInto": None},
            }
            # The merged customer's subscribers see its own record, now merged.
            assert await _change(on_b) == {
                "eventType": "customer.merged",
                "customer": {"id": str(b), "status": "MERGED", "mergedInto": {"id": str(a)}},
            }
            await http.post("/graphql", json={"query": UNMERGE, "variables": {"id": merge_id}})
        assert (await _change(on_a))["eventType"] == "customer.unmerged"
        assert await _change(on_b) == {
            "eventType": "customer.unmerged",
            "customer": {"id": str(b), "status": "ACTIVE", "mergedInto": None},
        }
