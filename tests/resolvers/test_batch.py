"""Server-to-server lookups: `customers(ids:)` and `customersByEmails(emails:)`.

Key order, null for unknown keys, duplicates, the 500-key limit, who may ask, and round trips
that do not grow with the number of keys.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.connections import Connections
from domain.principal import Role, Scope
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT, bearer
from tests.builders import build_customer
from tests.queries import graphql
from tests.trips import trips

BY_IDS = """query($ids: [ID!]!) { customers(ids: $ids) {
  id name profile { segments } loyalty { tier } } }"""
BY_EMAILS = """query($emails: [String!]!) { customersByEmails(emails: $emails) {
  id email profile { segments } loyalty { tier } } }"""
# One SQL statement for the customers, one MongoDB command for the profiles, one loyalty batch.
BATCH_ROUND_TRIPS = trips(sql=1, mongo=1, loyalty=1)
SERVICE = bearer(Role.SERVICE, subject="test-crm", scopes=[Scope.CUSTOMERS.value])


@pytest.fixture(scope="module")
async def customers(connections: Connections, vendor_store: VendorStore) -> list[int]:
    """100 customers, each with a profile and a loyalty membership."""
    return [
        await build_customer(connections, vendor_store, orders=0, interactions=0)
        for _ in range(100)
    ]


async def _ask(
    client: httpx.AsyncClient,
    connections: Connections,
    query: str,
    variables: dict[str, Any],
    headers: dict[str, str] = AGENT,
) -> tuple[dict[str, Any], dict[str, int]]:
    before = connections.round_trips.snapshot()
    body = await graphql(client, query, variables, headers)
    return body, connections.round_trips.since(before)


def _email(cid: int) -> str:
    return f"test.{cid}@example.com"


@pytest.mark.parametrize("count", [1, 100])
async def test_customers_by_ids_cost_one_round_trip_per_source(
    client: httpx.AsyncClient, connections: Connections, customers: list[int], count: int
) -> None:
    ids = [str(c) for c in customers[:count]]
    body, spent = await _ask(client, connections, BY_IDS, {"ids": ids})
    assert "errors" not in body, body["errors"]
    found = body["data"]["customers"]
    assert [c["id"] for c in found] == ids
    assert all(c["profile"]["segments"] == ["newsletter"] for c in found)
    assert all(c["loyalty"]["tier"] == "GOLD" for c in found)
    assert spent == BATCH_ROUND_TRIPS


async def test_customers_by_ids_keep_key_order_with_unknown_invalid_and_duplicate_ids(
    client: httpx.AsyncClient, connections: Connections, customers: list[int]
) -> None:
    a, b = str(customers[0]), str(customers[1])
    ids = [b, "999999999", a, "not-a-number", b, "0"]
    body, _ = await _ask(client, connections, BY_IDS, {"ids": ids})
    assert "errors" not in body, body["errors"]
    assert [c and c["id"] for c in body["data"]["customers"]] == [b, None, a, None, b, None]


async def test_500_ids_are_one_round_trip_per_source_and_501_are_refused(
    client: httpx.AsyncClient, connections: Connections, customers: list[int]
) -> None:
    # The built customers, the seeded ones (1-30), unknown ids and repeats: 500 keys.
    keys = [str(c) for c in customers] + [str(n) for n in range(1, 31)]
    keys += [str(900_000_000 + n) for n in range(370)]
    assert len(keys) == 500
    body, spent = await _ask(client, connections, BY_IDS, {"ids": keys})
    assert "errors" not in body, body["errors"]
    found = body["data"]["customers"]
    assert len(found) == 500
    assert [c["id"] for c in found[:130]] == keys[:130]
    assert found[130:] == [None] * 370
    # The seeded customers may have no profile or membership; still one call per source.
    assert spent == BATCH_ROUND_TRIPS

    body, spent = await _ask(client, connections, BY_IDS, {"ids": [*keys, keys[0]]})
    assert body["data"] == {"customers": None}
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"] == (
        "`ids` holds 501 keys; one lookup takes at most 500: split the keys over several requests."
    )
    assert error["path"] == ["customers"]
    assert spent == trips()


@pytest.mark.parametrize("count", [1, 100])
async def test_customers_by_emails_cost_two_sql_round_trips_whatever_the_count(
    client: httpx.AsyncClient, connections: Connections, customers: list[int], count: int
) -> None:
    # Emails match whatever their case and surrounding spaces.
    emails = [f"  {_email(c).upper()} " for c in customers[:count]]
    body, spent = await _ask(client, connections, BY_EMAILS, {"emails": emails})
    assert "errors" not in body, body["errors"]
    found = body["data"]["customersByEmails"]
    assert [c["id"] for c in found] == [str(c) for c in customers[:count]]
    assert [c["email"] for c in found] == [_email(c) for c in customers[:count]]
    assert all(c["loyalty"]["tier"] == "GOLD" for c in found)
    # One statement finds the customers by their emails, then one call per other source.
    assert spent == BATCH_ROUND_TRIPS


async def test_customers_by_emails_keep_key_order_with_unknown_and_duplicate_emails(
    client: httpx.AsyncClient, connections: Connections, customers: list[int]
) -> None:
    a, b = customers[0], customers[1]
    emails = [_email(b), "nobody@example.com", _email(a), "", _email(b)]
    body, _ = await _ask(client, connections, BY_EMAILS, {"emails": emails})
    assert "errors" not in body, body["errors"]
    found = [c and c["id"] for c in body["data"]["customersByEmails"]]
    assert found == [str(b), None, str(a), None, str(b)]


async def test_501_emails_are_refused(client: httpx.AsyncClient, connections: Connections) -> None:
    emails = [f"n{n}@example.com" for n in range(501)]
    body, spent = await _ask(client, connections, BY_EMAILS, {"emails": emails})
    assert body["data"] == {"customersByEmails": None}
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "at most 500" in body["errors"][0]["message"]
    assert spent["sql"] == 0


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        (bearer(Role.AGENT), True),
        (bearer(Role.ANALYST), True),
        (bearer(Role.ADMIN), True),
        (SERVICE, True),
        (bearer(Role.SERVICE, subject="test-orders", scopes=[Scope.ORDERS.value]), False),
        (bearer(Role.CUSTOMER, subject="1"), False),
    ],
    ids=["agent", "analyst", "admin", "service", "service-without-scope", "customer"],
)
async def test_staff_and_services_with_the_scope_may_look_up_many_customers(
    client: httpx.AsyncClient,
    connections: Connections,
    customers: list[int],
    headers: dict[str, str],
    allowed: bool,
) -> None:
    cid = customers[0]
    for query, variables, field in (
        ("query($ids: [ID!]!) { customers(ids: $ids) { id } }", {"ids": ["1"]}, "customers"),
        (
            "query($e: [String!]!) { customersByEmails(emails: $e) { id } }",
            {"e": [_email(cid)]},
            "customersByEmails",
        ),
    ):
        body, _ = await _ask(client, connections, query, variables, headers)
        if allowed:
            assert "errors" not in body, body["errors"]
            assert len(body["data"][field]) == 1
        else:
            assert body["data"] == {field: None}
            [error] = body["errors"]
            assert error["extensions"]["code"] == "FORBIDDEN"
            assert "`customers:read`" in error["message"]


async def test_field_rules_still_apply_to_each_customer(
    client: httpx.AsyncClient, connections: Connections, customers: list[int]
) -> None:
    """A service without `pii:read` gets each email refused; an analyst gets them masked."""
    query = "query($ids: [ID!]!) { customers(ids: $ids) { id email } }"
    ids = [str(c) for c in customers[:3]]
    body, _ = await _ask(client, connections, query, {"ids": ids}, SERVICE)
    assert [c["email"] for c in body["data"]["customers"]] == [None] * 3
    assert {tuple(e["path"]) for e in body["errors"]} == {
        ("customers", n, "email") for n in range(3)
    }
    body, _ = await _ask(client, connections, query, {"ids": ids}, bearer(Role.ANALYST))
    assert "errors" not in body
    assert all(c["email"].startswith("t***@") for c in body["data"]["customers"])


async def test_the_cost_limit_counts_every_key(
    client: httpx.AsyncClient, connections: Connections
) -> None:
    """The cost multiplies by the number of ids: 500 ids of a rich selection exceed a budget
    that the same selection for one id fits in."""
    query = """query($ids: [ID!]!) { customers(ids: $ids) { orders(first: 10) { edges { node {
        lines { product { name } } } } } } }"""
    one, _ = await _ask(client, connections, query, {"ids": ["1"]})
    assert "errors" not in one, one["errors"]
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": {"ids": [str(n) for n in range(1, 501)]}},
        headers=AGENT,
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["limit"] == "cost"
