"""GraphQL documents the tests send: the users' documents are the bench's, written once."""

from typing import Any

import httpx

from bench.documents import AGENT_QUERY, many_customers_query


async def graphql(
    http: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The response body of one GraphQL POST to `/graphql` (HTTP 200 asserted)."""
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def agent_view(http: httpx.AsyncClient, customer_id: int) -> dict[str, Any]:
    """The agent query's response body for one customer (HTTP 200 asserted)."""
    return await graphql(http, AGENT_QUERY, {"id": str(customer_id)})


__all__ = ["AGENT_QUERY", "agent_view", "graphql", "many_customers_query"]
