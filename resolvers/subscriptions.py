"""Subscriptions: live changes of one customer, resumable after an event id.

Each delivered change is resolved with fresh loaders, for the selection the client asked, so
it shows the customer as the change left them (the change invalidated the cache first).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError

from domain.principal import Scope
from resolvers.access import own_customer, readable
from resolvers.common import Info, load, parse_id
from resolvers.customer import Customer
from resolvers.engagement import Interaction, Ticket
from resolvers.enums import Channel, InteractionType
from resolvers.order import Order
from sources.events.bus import Delivery, NotRetainedError
from sources.events.hub import ShuttingDownError, SlowConsumerError
from sources.events.outbox import was_issued
from sources.loader import outages_as_source_errors

CUSTOMER_EVENTS = ("customer.", "consent.", "order.", "interaction.", "ticket.", "cart.")
ORDER_EVENTS = ("order.",)
ACTIVITY_EVENTS = ("interaction.", "ticket.", "cart.")

CustomerIdArg = Annotated[strawberry.ID, strawberry.argument(description="The customer.")]
AfterArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="Resume after this event id (an `eventId`)."),
]


@strawberry.type(description="One change to a customer, and the customer after it.")
class CustomerChange:
    customer_id: strawberry.Private[int]
    event_id: strawberry.ID = strawberry.field(
        description="Id of the change event: pass it as `after` to resume from here."
    )
    event_type: str = strawberry.field(description="What changed, e.g. customer.contact_changed.")
    occurred_at: dt.datetime = strawberry.field(description="When the change was committed.")

    @strawberry.field(description="The customer as the change left them.")
    async def customer(self, info: Info) -> Customer | None:
        record = await load(info, info.context.loaders.sql.customer_by_id, self.customer_id)
        return Customer.from_record(record) if record else None


@strawberry.type(description="An order placed or moved on, and the order after it.")
class OrderChange:
    order_id: strawberry.Private[int]
    event_id: strawberry.ID = strawberry.field(
        description="Id of the change event: pass it as `after` to resume from here."
    )
    event_type: str = strawberry.field(description="order.placed or order.status_changed.")

    @strawberry.field(description="The order as the change left it.")
    async def order(self, info: Info) -> Order | None:
        record = await load(info, info.context.loaders.sql.order_by_id, self.order_id)
        return Order.from_record(record) if record else None


@strawberry.type(description="A new interaction or a ticket change, as it happens.")
class CustomerActivity:
    customer_id: strawberry.Private[int]
    ticket_id: strawberry.Private[str | None]
    event_id: strawberry.ID = strawberry.field(
        description="Id of the event: pass it as `after` to resume from here."
    )
    event_type: str = strawberry.field(
        description="interaction.recorded, cart.abandoned or ticket.status_changed."
    )
    interaction: Interaction | None = strawberry.field(
        description="The interaction, for interaction and cart events."
    )

    @strawberry.field(
        description="The ticket as the change left it, for ticket events.",
        extensions=[readable(Scope.TICKETS)],
    )
    async def ticket(self, info: Info) -> Ticket | None:
        if self.ticket_id is None:
            return None
        tickets = await load(
            info, info.context.loaders.mongo.tickets_by_customer, (self.customer_id, None)
        )
        found = [t for t in tickets or [] if t.id == self.ticket_id]
        return Ticket.from_record(found[0]) if found else None


def _subscription_error(code: str, message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


async def _deliveries(
    info: Info,
    customer_id: strawberry.ID,
    after: strawberry.ID | None,
    kinds: tuple[str, ...],
) -> AsyncGenerator[tuple[int, Delivery], None]:
    """The customer's events of the given kinds, each with fresh loaders set for it."""
    number = parse_id(customer_id)
    if number is None:
        raise _subscription_error("CUSTOMER_NOT_FOUND", f"no customer has id {customer_id}")
    connections = info.context.connections

    def wants(delivery: Delivery) -> bool:
        return delivery.event.type.startswith(kinds)

    last: str | None = after
    try:
        async with (
            info.context.admitted(),
            connections.hub.subscribe(str(number), wants, after_event=after) as feed,
        ):
            async for delivery in feed:
                info.context.use_fresh_loaders()
                last = delivery.event.id
                yield number, delivery
    except NotRetainedError:
        # An outbox that does not answer is the event history's outage: SOURCE_UNAVAILABLE.
        with outages_as_source_errors("events", "looking up an event id"):
            issued = await was_issued(
                engine=connections.engine, db=connections.db, event_id=str(after)
            )
        if not issued:
            raise _subscription_error(
                "EVENT_UNKNOWN",
                f"no event has id {after}: resume with an `eventId` this subscription "
                "delivered, or subscribe without `after`",
            ) from None
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
    except ShuttingDownError as stopping:
        # The socket closes next (1012): `resumeAfter` is where to pick up, on any instance:
        # the last event delivered, or the hub's last before this subscription went live.
        resume = stopping.resume_after
        raise GraphQLError(
            "this c360 instance is stopping; subscribe again with after: "
            + (resume or "the last eventId you received"),
            extensions={"code": "SHUTTING_DOWN", "resumeAfter": resume},
        ) from None


def _activity(customer_id: int, delivery: Delivery) -> CustomerActivity:
    event = delivery.event
    interaction = None
    if event.type == "interaction.recorded":
        interaction = Interaction(
            id=strawberry.ID(event.id),
            type=InteractionType.of(event.data["type"]),
            channel=Channel.of(event.data["channel"]),
            occurred_at=dt.datetime.fromisoformat(event.data["occurred_at"]),
            details={},
        )
    ticket_id = event.data.get("ticket_id") if event.type == "ticket.status_changed" else None
    return CustomerActivity(
        customer_id=customer_id,
        ticket_id=ticket_id,
        event_id=strawberry.ID(event.id),
        event_type=event.type,
        interaction=interaction,
    )


def _subscribed_customer(arguments: dict[str, Any]) -> object:
    return arguments["customer_id"]


@strawberry.type(description="Live changes, pushed over WebSocket (graphql-transport-ws).")
class Subscription:
    @strawberry.subscription(
        description="Every change to one customer as it happens. With `after`, first the "
        "retained changes after that event id, then live ones, with no gap and no duplicate.",
        extensions=[own_customer(Scope.CUSTOMERS, _subscribed_customer)],
    )
    async def customer_changed(
        self, info: Info, customer_id: CustomerIdArg, after: AfterArg = None
    ) -> AsyncGenerator[CustomerChange, None]:
        async for number, delivery in _deliveries(info, customer_id, after, CUSTOMER_EVENTS):
            yield CustomerChange(
                customer_id=number,
                event_id=strawberry.ID(delivery.event.id),
                event_type=delivery.event.type,
                occurred_at=delivery.event.time,
            )

    @strawberry.subscription(
        description="Each order of one customer placed or moved on, with the order after it; "
        "resumable with `after` like customerChanged.",
        extensions=[own_customer(Scope.ORDERS, _subscribed_customer)],
    )
    async def order_changed(
        self, info: Info, customer_id: CustomerIdArg, after: AfterArg = None
    ) -> AsyncGenerator[OrderChange, None]:
        async for _, delivery in _deliveries(info, customer_id, after, ORDER_EVENTS):
            yield OrderChange(
                order_id=int(delivery.event.data["order_id"]),
                event_id=strawberry.ID(delivery.event.id),
                event_type=delivery.event.type,
            )

    @strawberry.subscription(
        description="Each new interaction or ticket change of one customer, as it happens; "
        "resumable with `after` like customerChanged.",
        extensions=[own_customer(Scope.TIMELINE, _subscribed_customer)],
    )
    async def customer_activity(
        self, info: Info, customer_id: CustomerIdArg, after: AfterArg = None
    ) -> AsyncGenerator[CustomerActivity, None]:
        async for number, delivery in _deliveries(info, customer_id, after, ACTIVITY_EVENTS):
            yield _activity(number, delivery)
