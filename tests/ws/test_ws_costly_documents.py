"""The checks that keep a costly document from stalling the server, for WebSocket operations."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.http.test_costly_documents import REPEATED, held, max_hold
from tests.ws.test_subscriptions import graphql_ws, next_message

# The document as a subscription, and with its repeats nested below a field.
SUBSCRIPTIONS = {
    "the issue's document": ("customer { " + REPEATED * 400 + "}", "selections"),
    "nested": (
        "customer { orders(first: 1) { edges { node { customer { " + REPEATED * 300 + "} } } } }",
        "comparisons",
    ),
}


@pytest.mark.parametrize("name", list(SUBSCRIPTIONS))
async def test_a_stalling_subscription_is_refused_without_holding_the_loop(
    live_server: str, name: str
) -> None:
    selection, limit = SUBSCRIPTIONS[name]
    # A customer id of its own, so no cache of an earlier request's work can help.
    customer = uuid.uuid4().int % 10**9
    query = f'subscription {{ customerChanged(customerId: "{customer}") {{ {selection} }} }}'
    allowed = max_hold(query)
    async with graphql_ws(live_server) as ws:
        await ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"query": query}}))
        message, hold = await held(next_message(ws))

    assert message["type"] == "error"
    [error] = message["payload"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["limit"] == limit
    assert hold < allowed, f"the loop was held {hold * 1000:.0f} ms of {allowed * 1000:.0f}"


async def test_subscriptions_sharing_a_fragment_chain_are_refused_without_holding_the_loop(
    live_server: str,
) -> None:
    # The review's document over a socket: each operation is small; the document is not.
    customer = uuid.uuid4().int % 10**9
    operations = " ".join(f"subscription s{n} {{ ...F0 }}" for n in range(350))
    chain = " ".join(f"fragment F{n} on Subscription {{ ...F{n + 1} }}" for n in range(120))
    field = f'customerChanged(customerId: "{customer}") {{ eventId }}'
    last = f"fragment F120 on Subscription {{ {field} }}"
    payload = {"query": f"{operations} {chain} {last}", "operationName": "s0"}
    allowed = max_hold(payload["query"])
    async with graphql_ws(live_server) as ws:
        await ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": payload}))
        message, hold = await held(next_message(ws))

    assert message["type"] == "error", message
    [error] = message["payload"]
    assert error["extensions"]["limit"] == "selections"
    # Each: its spread, F0..F119's spreads, then customerChanged and eventId.
    assert error["extensions"]["measured"] == 350 * 123
    assert hold < allowed, f"the loop was held {hold * 1000:.0f} ms of {allowed * 1000:.0f}"
