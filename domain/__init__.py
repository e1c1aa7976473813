"""c360's write model: every change to customer data, whoever asks for it.

Mutations (`resolvers.mutations`), ingested upstream events (`domain.ingestion`) and any
future consumer make changes through the commands named here, so a change means the same
thing whoever makes it: it is validated, written with its event in one transaction per store
(the transactional outbox), the cache entries it touches are invalidated by their loaders'
names, and the relay is woken to publish the event.

The commands are grouped by entity: `customers` (contact details, addresses), `orders`,
`engagement` (consents, the interaction timeline), `tickets` and `merges`; `changes` holds
what they share (the stores, the transactions, finding the customer a change is about) and
`errors` why a change is refused. This package reads and writes the stores only through
`sources`, and knows nothing of GraphQL or HTTP.
"""

from domain.changes import Changes
from domain.customers import (
    change_address,
    change_contact,
    normalise_email,
    remove_address,
)
from domain.engagement import change_consent, record_interaction
from domain.errors import ChangeRejectedError, DuplicateEventError
from domain.merges import MOVED, StalledMerges, merge_customers, unmerge_customers
from domain.orders import change_order_status, place_order
from domain.tickets import change_ticket_status, open_ticket

__all__ = [
    "MOVED",
    "ChangeRejectedError",
    "Changes",
    "DuplicateEventError",
    "StalledMerges",
    "change_address",
    "change_consent",
    "change_contact",
    "change_order_status",
    "change_ticket_status",
    "merge_customers",
    "normalise_email",
    "open_ticket",
    "place_order",
    "record_interaction",
    "remove_address",
    "unmerge_customers",
]
