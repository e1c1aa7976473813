"""GraphQL documents the tests send: the users' documents are the bench's, written once."""

from typing import Any

import httpx

from bench.documents import AGENT_QUERY, many_customers_query


async def agent_view(http: httpx.AsyncClient, customer_id: int) -> dict[str, Any]:
    """The agent query's response body for one customer (HTTP 200 asserted)."""
    response = await http.post(
        "/graphql", json={"query": AGENT_QUERY, "variables": {"id": str(customer_id)}}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


__all__ = ["AGENT_QUERY", "agent_view", "many_customers_query"]
