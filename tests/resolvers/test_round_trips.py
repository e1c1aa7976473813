"""Batching: round trips per source, counted at the drivers, do not grow with the data."""

from __future__ import annotations

from typing import Any

import httpx

from api.connections import Connections
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT
from tests.builders import build_customer
from tests.queries import AGENT_QUERY, many_customers_query
from tests.trips import trips

# customer, addresses, order page, lines, products | profile, tickets, timeline | one each.
AGENT_ROUND_TRIPS = trips(sql=5, mongo=3, loyalty=1, tracking=1)


async def measured(
    base_url: str, connections: Connections, query: str, variables: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, int]]:
    async with httpx.AsyncClient(base_url=base_url, headers=AGENT) as http:
        before = connections.round_trips.snapshot()
        response = await http.post("/graphql", json={"query": query, "variables": variables})
        spent = connections.round_trips.since(before)
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    return body, spent


async def test_agent_query_costs_the_same_for_1_and_50_orders(
    live_server: str, connections: Connections, vendor_store: VendorStore
) -> None:
    one = await build_customer(connections, vendor_store, orders=1)
    fifty = await build_customer(connections, vendor_store, orders=50)

    body_one, spent_one = await measured(live_server, connections, AGENT_QUERY, {"id": str(one)})
    body_fifty, spent_fifty = await measured(
        live_server, connections, AGENT_QUERY, {"id": str(fifty)}
    )

    assert body_one["data"]["customer"]["orders"]["totalCount"] == 1
    assert body_fifty["data"]["customer"]["orders"]["totalCount"] == 50
    # The page holds 10 of the 50 orders, each with lines, products and a shipment.
    assert all(e["node"]["shipment"] for e in body_fifty["data"]["customer"]["orders"]["edges"])
    assert spent_one == AGENT_ROUND_TRIPS
    assert spent_fifty == AGENT_ROUND_TRIPS


async def test_many_customers_cost_no_more_round_trips_than_one(
    live_server: str, connections: Connections, vendor_store: VendorStore
) -> None:
    # As many agent views as one document may select (C360_LIMIT_SELECTIONS, 1,000).
    count = 19
    ids = [await build_customer(connections, vendor_store, orders=3) for _ in range(count)]

    _, spent_one = await measured(
        live_server, connections, many_customers_query(1), {"id0": str(ids[0])}
    )
    body, spent_many = await measured(
        live_server,
        connections,
        many_customers_query(count),
        {f"id{n}": str(i) for n, i in enumerate(ids)},
    )

    assert [body["data"][f"c{n}"]["id"] for n in range(count)] == [str(i) for i in ids]
    assert spent_one == AGENT_ROUND_TRIPS
    assert spent_many == AGENT_ROUND_TRIPS


async def test_order_to_customer_and_back_is_batched_per_level(
    live_server: str, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store, orders=20)
    query = """query($id: ID!) { customer(id: $id) { orders(first: 20) { edges { node {
        customer { id addresses { city } profile { segments } } } } } } }"""
    body, spent = await measured(live_server, connections, query, {"id": str(cid)})
    edges = body["data"]["customer"]["orders"]["edges"]
    assert {e["node"]["customer"]["id"] for e in edges} == {str(cid)}
    # customer (root) + page + addresses; the order's customer is the cached root one.
    assert spent == trips(sql=3, mongo=1)


CONTACT_CHANGE = """mutation($input: UpdateCustomerContactInput!) {
  updateCustomerContact(input: $input) {
    __typename ... on UpdateCustomerContactError { code } } }"""
# Lock the customer (SQLite: an UPDATE taking the write lock, then the read; PostgreSQL: one
# SELECT ... FOR UPDATE), update it, read it back, rewrite its search terms, queue the event.
# PostgreSQL's transaction id, kept in case the COMMIT's answer is lost, comes back from the
# outbox insert, not from a round trip of its own.
CONTACT_CHANGE_SQL_ROUND_TRIPS = {"sqlite": 7, "postgresql": 6}


async def test_a_mutation_costs_only_its_own_sql_round_trips(
    live_server: str, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    change = {"input": {"customerId": str(cid), "lastName": "Counted"}}

    body, spent = await measured(live_server, connections, CONTACT_CHANGE, change)

    assert body["data"]["updateCustomerContact"]["__typename"] == "UpdateCustomerContactSuccess"
    backend = connections.engine.dialect.name
    assert spent["sql"] == CONTACT_CHANGE_SQL_ROUND_TRIPS[backend]
