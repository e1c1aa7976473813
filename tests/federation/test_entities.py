"""Federation's `_entities` over POST /graphql: batched through the loaders, with the access rules.

A gateway sends every representation of one type in one `_entities` call; c360 gives them to the
type's `resolve_references` together, so the counters must show one round trip per source per
level whatever the number of representations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from graphql import parse
from pydantic import SecretStr
from starlette.applications import Starlette

from api.connections import Connections
from api.context import create_context, create_loaders
from api.execution import Executor
from api.settings import Engine, Environment, Settings
from api.tokens import mint_token
from domain.merges import merge_customers
from domain.principal import Principal, Role, Scope
from resolvers.federation import subgraph_sdl
from resolvers.schema import create_schema
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT, bearer
from tests.builders import build_customer
from tests.conftest import running_app
from tests.trips import trips

ENTITIES = """query Entities($representations: [_Any!]!) {
  _entities(representations: $representations) {
    __typename
    ... on Customer { id name email profile { segments } loyalty { tier } }
    ... on Order { id number status }
    ... on Product { sku name price { amount currency } }
  }
}"""
NO_ROUND_TRIPS = trips()


@pytest.fixture(scope="module")
async def customers(connections: Connections, vendor_store: VendorStore) -> list[int]:
    """100 customers with a profile, a loyalty membership and two orders each."""
    return [
        await build_customer(connections, vendor_store, orders=2, interactions=0)
        for _ in range(100)
    ]


def _anonymous(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c360.test")


def _by_id(cid: int) -> dict[str, str]:
    return {"__typename": "Customer", "id": str(cid)}


def _by_email(cid: int) -> dict[str, str]:
    return {"__typename": "Customer", "email": f"test.{cid}@example.com"}


def _order(cid: int, n: int = 0) -> dict[str, str]:
    return {"__typename": "Order", "id": str(cid * 1000 + n)}  # as tests.builders numbers them


async def _entities(
    client: httpx.AsyncClient,
    connections: Connections,
    representations: list[dict[str, Any]],
    headers: dict[str, str] = AGENT,
    query: str = ENTITIES,
) -> tuple[dict[str, Any], dict[str, int]]:
    before = connections.round_trips.snapshot()
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": {"representations": representations}},
        headers=headers,
    )
    spent = connections.round_trips.since(before)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body, spent


@pytest.mark.parametrize("count", [1, 100])
@pytest.mark.parametrize("key", [_by_id, _by_email], ids=["by-id", "by-email"])
async def test_customer_representations_are_batched(
    client: httpx.AsyncClient,
    connections: Connections,
    customers: list[int],
    count: int,
    key: Any,
) -> None:
    body, spent = await _entities(client, connections, [key(c) for c in customers[:count]])
    assert "errors" not in body, body["errors"]
    found = body["data"]["_entities"]
    assert [e["id"] for e in found] == [str(c) for c in customers[:count]]
    assert {e["__typename"] for e in found} == {"Customer"}
    assert all(e["email"] == f"test.{e['id']}@example.com" for e in found)
    assert all(e["loyalty"]["tier"] == "GOLD" and e["profile"]["segments"] for e in found)
    # One statement for the customers, by id or by email, then one call per other source,
    # however many representations.
    assert spent == trips(sql=1, mongo=1, loyalty=1)


async def test_mixed_types_and_keys_are_batched_per_loader_and_answered_in_order(
    client: httpx.AsyncClient, connections: Connections, customers: list[int]
) -> None:
    """Customers by id and by email, orders and products, interleaved in one call: each kind
    of key is one batch of its loader, all asked side by side, and the answers keep the
    order given."""
    representations: list[dict[str, str]] = []
    for index, cid in enumerate(customers[:40]):
        representations.append(_by_id(cid) if index % 2 else _by_email(cid))
        representations.append(_order(cid))
        representations.append({"__typename": "Product", "sku": f"SKU-{index + 1:05d}"})
    body, spent = await _entities(client, connections, representations)
    assert "errors" not in body, body["errors"]
    found = body["data"]["_entities"]
    assert [e["__typename"] for e in found] == [r["__typename"] for r in representations]
    assert [e.get("id") or e.get("sku") for e in found] == [
        r.get("id") or r.get("sku") or str(customers[i // 3]) for i, r in enumerate(representations)
    ]
    # Customers by id, by email, orders and products: four SQL statements; then one call per
    # other source for the customers' fields.
    assert spent == trips(sql=4, mongo=1, loyalty=1)


async def test_order_and_product_representations_are_batched(
    client: httpx.AsyncClient, connections: Connections, customers: list[int]
) -> None:
    orders = [_order(c, n) for c in customers[:50] for n in (0, 1)]
    body, spent = await _entities(client, connections, orders)
    assert "errors" not in body, body["errors"]
    assert [e["id"] for e in body["data"]["_entities"]] == [o["id"] for o in orders]
    assert {e["status"] for e in body["data"]["_entities"]} == {"SHIPPED"}
    assert spent == NO_ROUND_TRIPS | {"sql": 1}

    # A further level (the order's customer) is one more statement, not one per order.
    deeper = "query($representations: [_Any!]!) { _entities(representations: $representations) {"
    deeper += " ... on Order { id customer { id name } } } }"
    body, spent = await _entities(client, connections, orders, query=deeper)
    assert "errors" not in body, body["errors"]
    owners = [e["customer"]["id"] for e in body["data"]["_entities"]]
    assert owners == [str(c) for c in customers[:50] for _ in (0, 1)]
    assert spent == NO_ROUND_TRIPS | {"sql": 2}

    products = [{"__typename": "Product", "sku": f"SKU-{n:05d}"} for n in range(1, 101)]
    body, spent = await _entities(client, connections, products)
    assert "errors" not in body, body["errors"]
    assert [e["sku"] for e in body["data"]["_entities"]] == [p["sku"] for p in products]
    assert spent == NO_ROUND_TRIPS | {"sql": 1}


async def test_mixed_and_unknown_representations_keep_their_order(
    client: httpx.AsyncClient, connections: Connections, customers: list[int]
) -> None:
    cid = customers[0]
    representations = [
        _order(cid),
        _by_id(cid),
        {"__typename": "Customer", "id": "999999999"},
        {"__typename": "Product", "sku": "SKU-00001"},
        {"__typename": "Customer", "email": "nobody@example.com"},
        {"__typename": "Order", "id": "not-a-number"},
        _by_email(cid),
    ]
    body, spent = await _entities(client, connections, representations)
    assert "errors" not in body, body["errors"]
    found = body["data"]["_entities"]
    assert [e and e["__typename"] for e in found] == [
        "Order",
        "Customer",
        None,
        "Product",
        None,
        None,
        "Customer",
    ]
    assert found[1]["id"] == found[6]["id"] == str(cid)
    # Orders, products, emails, then the customers of ids and emails together.
    assert spent["sql"] == 4


async def test_a_representation_of_a_merged_customer_lands_on_the_survivor(
    client: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
    customers: list[int],
) -> None:
    survivor, merged = [
        await build_customer(connections, vendor_store, orders=1, interactions=0) for _ in "ab"
    ]
    await merge_customers(
        connections.changes, survivor_id=survivor, merged_id=merged, merged_by="test"
    )
    body, _ = await _entities(client, connections, [_by_id(merged), _by_email(merged)])
    assert "errors" not in body, body["errors"]
    assert [e["id"] for e in body["data"]["_entities"]] == [str(survivor), str(survivor)]

    # A customer principal whose record was merged reaches that record only, not the
    # survivor's orders: a merge made in error must not open another person's data to it.
    query = """query($representations: [_Any!]!) { _entities(representations: $representations) {
      ... on Customer { id status orders(first: 5) { totalCount } mergedInto { id } } } }"""
    me = bearer(Role.CUSTOMER, subject=str(merged))
    body, _ = await _entities(client, connections, [_by_id(merged)], query=query, headers=me)
    assert body["data"]["_entities"] == [
        {"id": str(merged), "status": "MERGED", "orders": {"totalCount": 0}, "mergedInto": None}
    ]
    [error] = body["errors"]
    assert (error["path"], error["extensions"]["code"]) == (
        ["_entities", 0, "mergedInto"],
        "FORBIDDEN",
    )


async def test_a_customer_principal_resolves_only_itself(
    client: httpx.AsyncClient, connections: Connections, customers: list[int]
) -> None:
    own, other = customers[0], customers[1]
    me = bearer(Role.CUSTOMER, subject=str(own))
    representations = [
        _by_id(own),
        _by_id(other),
        _by_email(own),
        _by_email(other),
        {"__typename": "Customer", "email": "nobody@example.com"},
        _order(own),
        _order(other),
        {"__typename": "Order", "id": "999999999"},
    ]
    body, _ = await _entities(client, connections, representations, me)
    found = body["data"]["_entities"]
    assert [e and e.get("id") for e in found] == [
        str(own),
        None,
        str(own),
        None,
        None,
        str(own * 1000),
        None,
        None,
    ]
    refused = {e["path"][1]: e["extensions"]["code"] for e in body["errors"]}
    assert refused == {
        1: "FORBIDDEN",
        3: "FORBIDDEN",
        4: "FORBIDDEN",
        6: "FORBIDDEN",
        7: "FORBIDDEN",
    }


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        ([Scope.CUSTOMERS.value, Scope.ORDERS.value, Scope.PII.value], {0, 1, 2}),
        ([Scope.CUSTOMERS.value], {0}),
        ([Scope.ORDERS.value], {1, 2}),
    ],
    ids=["all", "customers-only", "orders-only"],
)
async def test_a_service_resolves_what_its_scopes_open(
    client: httpx.AsyncClient,
    connections: Connections,
    customers: list[int],
    scopes: list[str],
    allowed: set[int],
) -> None:
    service = bearer(Role.SERVICE, subject="test-gateway", scopes=scopes)
    query = """query($representations: [_Any!]!) { _entities(representations: $representations) {
        __typename ... on Customer { id } ... on Order { id } ... on Product { sku } } }"""
    representations = [
        _by_id(customers[0]),
        _order(customers[0]),
        {"__typename": "Product", "sku": "SKU-00001"},
    ]
    body, _ = await _entities(client, connections, representations, service, query)
    found = body["data"]["_entities"]
    assert {n for n, e in enumerate(found) if e is not None} == allowed
    for error in body.get("errors", []):
        assert error["extensions"]["code"] == "FORBIDDEN"
        assert error["path"][1] not in allowed


async def test_entity_fields_keep_their_rules(
    client: httpx.AsyncClient, connections: Connections, customers: list[int]
) -> None:
    """Personal data is masked for an analyst and refused to a service without `pii:read`."""
    query = """query($representations: [_Any!]!) { _entities(representations: $representations) {
        ... on Customer { id email } } }"""
    representations = [_by_id(c) for c in customers[:2]]
    body, _ = await _entities(client, connections, representations, bearer(Role.ANALYST), query)
    assert [e["email"][:2] for e in body["data"]["_entities"]] == ["t*", "t*"]
    service = bearer(Role.SERVICE, subject="test-gateway", scopes=[Scope.CUSTOMERS.value])
    body, _ = await _entities(client, connections, representations, service, query)
    assert [e["email"] for e in body["data"]["_entities"]] == [None, None]
    assert {tuple(e["path"]) for e in body["errors"]} == {
        ("_entities", 0, "email"),
        ("_entities", 1, "email"),
    }


MALFORMED = {
    "no key": ({"__typename": "Customer"}, "carries the fields of one of its keys"),
    "an operator for an email": (
        {"__typename": "Customer", "email": {"$ne": ""}},
        "`email` of this Customer representation: String cannot represent a non string value",
    ),
    "a type without a key": (
        {"__typename": "AuditEntry", "customerId": "1"},
        "names an entity type (Customer, Order, Product); got 'AuditEntry'",
    ),
    "an unknown type": ({"__typename": "Nope", "id": "1"}, "got 'Nope'"),
    "no type": ({"id": "1"}, "got None"),
    "not an object": ("Customer:1", "got 'Customer:1'"),
    "a field of no key": (
        {"__typename": "Order", "id": "1", "customerId": "2"},
        "(`id`); got customerId, id",
    ),
    "an id of the wrong type": ({"__typename": "Order", "id": [1]}, "ID cannot represent"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_representation_is_a_user_error_at_its_index(
    client: httpx.AsyncClient, connections: Connections, customers: list[int], case: str
) -> None:
    representation, reason = MALFORMED[case]
    body, spent = await _entities(client, connections, [representation, _by_id(customers[0])])
    assert spent["sql"] == 1
    # The others still resolve: the error is the malformed one's alone.
    assert body["data"]["_entities"][0] is None
    assert body["data"]["_entities"][1]["id"] == str(customers[0])
    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert error["path"] == ["_entities", 0]
    assert reason in error["message"]


async def test_entities_need_a_credential_and_are_priced_per_representation(
    client: httpx.AsyncClient, app: Starlette, customers: list[int]
) -> None:
    payload = {"query": ENTITIES, "variables": {"representations": [_by_id(customers[0])]}}
    async with _anonymous(app) as http:
        refused = await http.post("/graphql", json=payload)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "`__typename`" in refused.json()["errors"][0]["message"]

    # The cost multiplies by the number of representations, as `customers(ids:)` by its ids.
    rich = """query($representations: [_Any!]!) { _entities(representations: $representations) {
        ... on Customer { orders(first: 10) { edges { node { lines { product { name } } } } } }
    } }"""
    many = [_by_id(customers[0])] * 500
    response = await client.post(
        "/graphql", json={"query": rich, "variables": {"representations": many}}, headers=AGENT
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["limit"] == "cost"


async def test_the_subgraph_sdl_is_open_where_introspection_is(
    app: Starlette, settings: Settings
) -> None:
    service_sdl = {"query": "{ _service { sdl } }"}
    # Development: anyone, as introspection (a gateway or `rover` may fetch it unauthenticated).
    async with _anonymous(app) as http:
        response = await http.post("/graphql", json=service_sdl)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["_service"]["sdl"] == subgraph_sdl(create_schema())

    secret = "a-production-secret-that-is-long-enough-0123456789"
    production = settings.model_copy(
        update={
            "env": Environment.PRODUCTION,
            "auth_jwt_secret": SecretStr(secret),
            "metrics_public": True,
        }
    )

    def as_role(role: Role) -> dict[str, str]:
        token = mint_token(production, subject=f"test-{role.value}", roles=[role])
        return {"authorization": f"Bearer {token}"}

    async with running_app(production) as (application, http):
        refused = await http.post("/graphql", json=service_sdl, headers=as_role(Role.AGENT))
        assert "data" not in refused.json()
        assert "`_service`" in refused.json()["errors"][0]["message"]
        async with _anonymous(application) as anonymous:
            response = await anonymous.post("/graphql", json=service_sdl)
        assert "`_service`" in response.json()["errors"][0]["message"]
        allowed = await http.post("/graphql", json=service_sdl, headers=as_role(Role.SERVICE))
        assert allowed.json()["data"]["_service"]["sdl"].startswith("schema @link(")


@pytest.mark.parametrize("engine", [Engine.PLAN, Engine.GRAPHQL_CORE])
async def test_a_failed_lookup_fails_only_the_representations_it_was_for(
    connections: Connections, customers: list[int], engine: Engine
) -> None:
    """The representations of one type are looked up together, but a key whose lookup fails
    is an error on its own index: the other representations, of that type and others, still
    answer, as each did when it was looked up alone."""
    broken = customers[1]
    loaders = create_loaders(connections)
    lookup = loaders.sql.customer_by_id.batch

    async def one_key_fails(keys: Sequence[Any]) -> list[Any]:
        values = await lookup(keys)
        return [
            RuntimeError("a bug in one lookup") if key == broken else value
            for key, value in zip(keys, values, strict=True)
        ]

    loaders.sql.customer_by_id.batch = one_key_fails
    representations = [_by_id(customers[0]), _by_id(broken), _order(customers[2])]
    representations.append(_by_id(customers[3]))
    principal = Principal(kind="jwt", name="test-agent", roles=frozenset({Role.AGENT}))
    context = create_context(connections, principal=principal, loaders=loaders)
    result = await Executor(create_schema(), engine).execute(
        parse(ENTITIES), context, variables={"representations": representations}
    )

    assert result.data is not None
    found = result.data["_entities"]
    assert [e and e.get("id") for e in found] == [
        str(customers[0]),
        None,
        _order(customers[2])["id"],
        str(customers[3]),
    ]
    assert [(e.path, e.message) for e in result.errors or []] == [
        (["_entities", 1], "a bug in one lookup")
    ]
