"""The checks that keep a costly document from stalling the server, for WebSocket operations."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.http.test_costly_documents import MAX_HOLD_SECONDS, REPEATED, held
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
    async with graphql_ws(live_server) as ws:
        await ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"query": query}}))
        message, hold = await held(next_message(ws))

    assert message["type"] == "error"
    [error] = message["payload"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["limit"] == limit
    assert hold < MAX_HOLD_SECONDS, f"the loop was held {hold * 1000:.0f} ms"
