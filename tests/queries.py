"""GraphQL documents the tests send: the users' documents are the bench's, written once."""

from typing import Any

import httpx
from graphql import get_introspection_query

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


def fragment_chain(operations: int, fragments: int, salt: str = "") -> str:
    """`operations` queries (`q0{salt}`, ...) each spreading F0, each fragment spreading the next
    to F{fragments}'s `__typename`: the review's short document of long validation work."""
    spreads = " ".join(f"query q{n}{salt} {{ ...F0 }}" for n in range(operations))
    links = " ".join(f"fragment F{n} on Query {{ ...F{n + 1} }}" for n in range(fragments))
    return f"{spreads} {links} fragment F{fragments} on Query {{ __typename }}"


__all__ = ["AGENT_QUERY", "agent_view", "fragment_chain", "graphql", "many_customers_query"]


# The introspection query GraphiQL itself sends (every option on), the longest public document.
GRAPHIQL_INTROSPECTION = get_introspection_query(
    descriptions=True,
    specified_by_url=True,
    directive_is_repeatable=True,
    schema_description=True,
    input_value_deprecation=True,
    one_of=True,
)
