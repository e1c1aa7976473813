"""The documents c360's users send, as the README shows them: GraphiQL's ready tabs, the
bench's workloads and the tests read them from here."""

from __future__ import annotations

# The contact-center agent's live customer screen (the foundation issue's acceptance query).
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

AGENT_QUERY = f"""query Agent($id: ID!) {{
  customer(id: $id) {{ {AGENT_FIELDS} }}
}}"""

# An order history page (customer 7 has four delivered orders: two pages); the next page with
# the `endCursor` it returned as `$after`.
HISTORY_QUERY = """query History($id: ID!, $after: String) {
  customer(id: $id) {
    orders(first: 3, after: $after, status: DELIVERED) {
      totalCount
      edges { node {
        number placedAt total { amount currency } lines { quantity product { name } }
      } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""

# An agent's live screen: each change to the customer as it commits.
CHANGES_SUBSCRIPTION = """subscription Changes($id: ID!) {
  customerChanged(customerId: $id) {
    eventId eventType customer { name email orders(first: 3) { edges { node { status } } } }
  }
}"""

# The customer the README's examples are about (a seeded one: ids start at 1).
EXAMPLE_CUSTOMER = "7"
