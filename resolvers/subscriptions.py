"""Subscriptions: live changes of one customer, resumable after an event id.

Each delivered change is resolved with fresh loaders, for the selection the client asked, so
it shows the customer as the change left them (the change invalidated the cache first).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry
from graphql import GraphQLError

from api.context import use_fresh_loaders
from resolvers.common import Info, load, parse_id
from resolvers.customer import Customer
from sources.events.bus import Delivery, NotRetainedError
from sources.events.hub import SlowConsumerError

CUSTOMER_EVENTS = ("customer.", "consent.", "order.", "interaction.", "ticket.", "cart.")


@strawberry.type(description="One change to a customer, and the customer after it.")
class CustomerChange:
    customer_id: strawberry.Private[int]
    event_id: strawberry.ID = strawberry.field(
        description="Id of the change event: pass it as `after` to resume from here."
    )
    event_type: str = strawberry.field(description="What changed, e.g. customer.contact_changed.")

    @strawberry.field(description="The customer as the change left them.")
    async def customer(self, info: Info) -> Customer | None:
        record = await load(info, info.context.loaders.sql.customer_by_id, self.customer_id)
        return Customer.from_record(record) if record else None


def _subscription_error(code: str, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


@strawberry.type(description="Live changes, pushed over WebSocket (graphql-transport-ws).")
class Subscription:
    @strawberry.subscription(
        description="Every change to one customer as it happens. With `after`, first the "
        "retained changes after that event id, then live ones, with no gap and no duplicate."
    )
    async def customer_changed(
        self,
        info: Info,
        customer_id: Annotated[strawberry.ID, strawberry.argument(description="The customer.")],
        after: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Resume after this event id (an `eventId`)."),
        ] = None,
    ) -> AsyncGenerator[CustomerChange, None]:
        number = parse_id(customer_id)
        if number is None:
            raise _subscription_error("CUSTOMER_NOT_FOUND", f"no customer has id {customer_id}")
        connections = info.context.connections

        def wants(delivery: Delivery) -> bool:
            return delivery.event.type.startswith(CUSTOMER_EVENTS)

        last: str | None = after
        try:
            async with connections.hub.subscribe(str(number), wants, after_event=after) as feed:
                async for delivery in feed:
                    use_fresh_loaders(connections)
                    last = delivery.event.id
                    yield CustomerChange(
                        customer_id=number,
                        event_id=strawberry.ID(delivery.event.id),
                        event_type=delivery.event.type,
                    )
        except NotRetainedError:
            raise _subscription_error(
                "EVENT_NOT_RETAINED",
                f"event {after} is older than the retained history; resubscribe without "
                "`after` and reload the customer",
            ) from None
        except SlowConsumerError:
            raise _subscription_error(
                "SLOW_CONSUMER",
                f"this subscriber fell too far behind and was closed; resume with after: {last}",
            ) from None
