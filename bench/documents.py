"""The GraphQL documents users send, shared by the bench workloads and the tests."""

from __future__ import annotations

from api.examples import AGENT_FIELDS, AGENT_QUERY

__all__ = [
    "AGENT_FIELDS",
    "AGENT_QUERY",
    "BATCH_QUERY",
    "ENTITIES_QUERY",
    "ORDERS_PAGE_QUERY",
    "SEARCH_QUERY",
    "TYPENAME_QUERY",
    "many_customers_query",
]

TYPENAME_QUERY = "{ __typename }"

# A web or mobile frontend's order history page.
ORDERS_PAGE_QUERY = """query OrderHistory($id: ID!) {
  customer(id: $id) {
    orders(first: 20) {
      totalCount
      edges { cursor node {
        number status placedAt total { amount currency }
        lines { quantity unitPrice { amount currency } product { sku name price { amount } } }
      } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""

# An agent typing into customer search: the first page of matches.
SEARCH_QUERY = """query Search($query: String!) {
  searchCustomers(query: $query, first: 20) {
    edges { cursor node { id name email phone } }
    pageInfo { hasNextPage endCursor }
  }
}"""

# A service looking many customers up at once, server to server (`customers(ids:)`).
BATCH_QUERY = """query Batch($ids: [ID!]!) {
  customers(ids: $ids) { id name profile { segments } loyalty { tier } }
}"""

# What an Apollo gateway sends c360 for the Customer entities another subgraph returned.
ENTITIES_QUERY = """query Entities($representations: [_Any!]!) {
  _entities(representations: $representations) {
    ... on Customer { id name email loyalty { tier } }
  }
}"""


def many_customers_query(count: int) -> str:
    """The agent view of `count` customers in one document, one alias each."""
    aliases = "\n".join(f"  c{n}: customer(id: $id{n}) {{ {AGENT_FIELDS} }}" for n in range(count))
    variables = ", ".join(f"$id{n}: ID!" for n in range(count))
    return f"query Many({variables}) {{\n{aliases}\n}}"
