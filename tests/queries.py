"""GraphQL documents the tests send, written once."""

AGENT_FIELDS = """
    id name email phone
    addresses { kind city country }
    profile { segments consents { channel granted } identities { type value } }
    loyalty { tier points }
    tickets(status: OPEN) { id subject status }
    timeline(first: 20) { edges { node { type channel occurredAt } } }
    orders(first: 10) { totalCount edges { cursor node {
      number status total { amount currency }
      lines { quantity product { sku name stock } }
      shipment { status eta } } } pageInfo { hasNextPage endCursor } }
"""

AGENT_QUERY = f"""
query Agent($id: ID!) {{
  customer(id: $id) {{ {AGENT_FIELDS} }}
}}
"""


def many_customers_query(count: int) -> str:
    """The agent view of `count` customers in one document, one alias each."""
    aliases = "\n".join(f"  c{n}: customer(id: $id{n}) {{ {AGENT_FIELDS} }}" for n in range(count))
    variables = ", ".join(f"$id{n}: ID!" for n in range(count))
    return f"query Many({variables}) {{\n{aliases}\n}}"
