"""GraphQL documents the tests send: the users' documents are the bench's, written once."""

from bench.documents import AGENT_QUERY, many_customers_query

__all__ = ["AGENT_QUERY", "many_customers_query"]
