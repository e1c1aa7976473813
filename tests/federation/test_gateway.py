"""c360 in a real federated graph: composed with Apollo's own library, served by Apollo Gateway.

tests/federation/gateway (JavaScript, pinned by its package-lock.json) holds a second, small
subgraph, support notes, that extends `Customer @key(fields: "id")` and returns Customer
references. `@apollo/composition` composes it with the committed schema.subgraph.graphql (which
tests/resolvers/test_schema.py holds to the code), and an `@apollo/gateway` process serves the
supergraph against the live c360 server, passing each caller's Authorization header on. Queries
through the gateway then cross between the subgraphs, and c360's counters show the gateway's
`_entities` fetch of 100 customers cost one round trip per source.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.connections import Connections
from domain.principal import Role, Scope
from sources.thirdparty.simulator import VendorStore
from tests.auth import bearer
from tests.builders import build_customer
from tests.node import node_server, node_with_packages, run
from tests.trips import trips

GATEWAY_DIR = Path(__file__).parent / "gateway"
SUBGRAPH_SDL = Path(__file__).resolve().parents[2] / "schema.subgraph.graphql"
COMPOSE_TIMEOUT = 60.0
NOTES = 100
# A service behind the gateway, as a key or token would hold it.
GATEWAY_CALLER = bearer(
    Role.SERVICE,
    subject="test-gateway",
    scopes=[Scope.CUSTOMERS.value, Scope.PII.value, Scope.LOYALTY.value],
)


@pytest.fixture(scope="module")
async def node() -> str:
    return await node_with_packages(GATEWAY_DIR, "@apollo/gateway", "the federation gateway test")


@pytest.fixture(scope="module")
async def customers(connections: Connections, vendor_store: VendorStore) -> list[int]:
    return [
        await build_customer(connections, vendor_store, orders=0, interactions=0)
        for _ in range(NOTES)
    ]


@pytest.fixture(scope="module")
async def notes_url(node: str, customers: list[int]) -> AsyncIterator[str]:
    """The support-notes subgraph: one note about each customer."""
    notes = [
        {"id": f"n{n}", "text": f"Note {n}", "customerId": str(cid)}
        for n, cid in enumerate(customers)
    ]
    async with node_server(node, "subgraph.mjs", json.dumps(notes), cwd=GATEWAY_DIR) as url:
        yield url


async def _compose(node: str, c360_url: str, notes_url: str) -> dict[str, Any]:
    code, out, err = await run(
        node,
        "compose.mjs",
        str(SUBGRAPH_SDL),
        c360_url,
        notes_url,
        cwd=GATEWAY_DIR,
        limit=COMPOSE_TIMEOUT,
    )
    assert code == 0, f"composition could not run ({code}):\n{err}"
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module")
async def gateway_url(
    node: str, live_server: str, notes_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    composed = await _compose(node, f"{live_server}/graphql", notes_url)
    assert composed["errors"] == []
    supergraph = tmp_path_factory.mktemp("supergraph") / "supergraph.graphql"
    supergraph.write_text(composed["supergraphSdl"], encoding="utf-8")
    async with node_server(node, "gateway.mjs", str(supergraph), cwd=GATEWAY_DIR) as url:
        yield url


async def _through_gateway(
    url: str, connections: Connections, query: str, headers: dict[str, str]
) -> tuple[dict[str, Any], dict[str, int]]:
    async with httpx.AsyncClient(timeout=30) as http:
        before = connections.round_trips.snapshot()
        response = await http.post(url, json={"query": query}, headers=headers)
        spent = connections.round_trips.since(before)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body, spent


async def test_the_subgraph_composes_with_another_without_errors(
    node: str, live_server: str
) -> None:
    composed = await _compose(node, f"{live_server}/graphql", "http://127.0.0.1:4001/graphql")
    assert composed["errors"] == []
    supergraph = composed["supergraphSdl"]
    assert '@join__graph(name: "c360", url: "' + live_server in supergraph
    # Customer is one entity of both subgraphs, keyed by id in each, and by email in c360.
    assert '@join__type(graph: C360, key: "id")' in supergraph
    assert '@join__type(graph: C360, key: "email")' in supergraph
    assert '@join__type(graph: NOTES, key: "id")' in supergraph


async def test_a_query_crosses_from_the_notes_subgraph_into_c360_in_one_batch(
    gateway_url: str, connections: Connections, customers: list[int]
) -> None:
    query = "{ notes { text customer { id name email loyalty { tier } } } }"
    body, spent = await _through_gateway(gateway_url, connections, query, GATEWAY_CALLER)
    assert "errors" not in body, body["errors"]
    notes = body["data"]["notes"]
    assert [n["customer"]["id"] for n in notes] == [str(c) for c in customers]
    for note, cid in zip(notes, customers, strict=True):
        assert note["customer"]["name"] == f"Test Customer{cid}"
        assert note["customer"]["email"] == f"test.{cid}@example.com"
        assert note["customer"]["loyalty"] == {"tier": "GOLD"}
    # The gateway asked c360 for the 100 customers in one `_entities` call: one statement and
    # one loyalty batch, not 100 of each.
    assert spent == trips(sql=1, loyalty=1)


async def test_a_query_crosses_from_c360_into_the_notes_subgraph(
    gateway_url: str, connections: Connections, customers: list[int]
) -> None:
    cid = customers[7]
    query = f'{{ customer(id: "{cid}") {{ name notes {{ text }} }} }}'
    body, spent = await _through_gateway(gateway_url, connections, query, GATEWAY_CALLER)
    assert "errors" not in body, body["errors"]
    assert body["data"]["customer"] == {
        "name": f"Test Customer{cid}",
        "notes": [{"text": "Note 7"}],
    }
    assert spent["sql"] == 1


async def test_c360_sees_the_callers_own_credential_through_the_gateway(
    gateway_url: str, connections: Connections
) -> None:
    query = "{ notes { text customer { email } } }"
    # Without a credential c360 refuses the gateway's entity fetch: nothing of c360's arrives.
    body, spent = await _through_gateway(gateway_url, connections, query, {})
    assert all(n["customer"]["email"] is None for n in body["data"]["notes"])
    [error] = body["errors"]
    assert error["extensions"]["response"]["status"] == 401
    assert error["extensions"]["response"]["body"]["errors"][0]["extensions"] == {
        "code": "UNAUTHENTICATED"
    }
    assert spent["sql"] == 0
    # A service without `pii:read` gets the customers, with each email refused by c360.
    no_pii = bearer(Role.SERVICE, subject="test-gateway", scopes=[Scope.CUSTOMERS.value])
    body, spent = await _through_gateway(gateway_url, connections, query, no_pii)
    assert all(n["customer"]["email"] is None for n in body["data"]["notes"])
    assert len(body["errors"]) == NOTES
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    assert spent["sql"] == 1
