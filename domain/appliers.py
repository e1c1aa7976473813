"""Apply an ingested upstream event: each registered type maps to one change.

Returns False when the event was applied before (its id is in an outbox already); raises
ChangeRejectedError when it is valid but cannot apply (an unknown customer, say, or an order or
ticket that is not the subject's: see `changes`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bson import ObjectId

from domain import customers, engagement, orders, tickets
from domain.changes import Changes
from domain.errors import ChangeRejectedError, DuplicateEventError
from domain.ingestion import Grouped, Ingestion, keep_in_sql
from sources import money
from sources.events.envelope import Event
from sources.events.outbox import UniqueIds
from sources.events.registry import SchemaRegistry
from sources.sql import writes

Applier = Callable[[Changes, Event, int], Awaitable[Any]]


def _minor(amount: str, currency: str, field: str) -> int:
    try:
        return money.to_minor(amount, currency)
    except money.AmountError as error:
        raise ChangeRejectedError("INVALID_AMOUNT", f"{field}: {error}", field) from error


async def _contact(changes: Changes, event: Event, customer_id: int) -> Any:
    data = event.data
    return await customers.change_contact(
        changes,
        customer_id=customer_id,
        email=data.get("email"),
        phone=data.get("phone"),
        first_name=data.get("first_name"),
        last_name=data.get("last_name"),
        origin=event,
    )


async def _address(changes: Changes, event: Event, customer_id: int) -> Any:
    return await customers.change_address(
        changes, customer_id=customer_id, address=event.data, origin=event
    )


async def _order_placed(changes: Changes, event: Event, customer_id: int) -> Any:
    data = event.data
    lines = [
        {
            "sku": line["sku"],
            "quantity": int(line["quantity"]),
            "unit_price_minor": _minor(str(line["unit_price"]), data["currency"], "unit_price"),
        }
        for line in data["lines"]
    ]
    return await orders.place_order(
        changes,
        customer_id=customer_id,
        order_id=int(data["order_id"]),
        number=data["number"],
        channel=data["channel"],
        currency=data["currency"],
        total_minor=_minor(str(data["total"]), data["currency"], "total"),
        lines=lines,
        placed_at=dt.datetime.fromisoformat(data["placed_at"]),
        origin=event,
    )


async def _order_status(changes: Changes, event: Event, customer_id: int) -> Any:
    data = event.data
    order_id = int(data["order_id"]) if data.get("order_id") else None
    number = data.get("number")
    if number is not None:
        # An ERP may only know the order number the customer sees. Ids and numbers never
        # change, so this lookup needs no lock.
        async with changes.engine.connect() as connection:
            numbered = await writes.order_id_by_number(connection=connection, number=number)
        if numbered is None:
            raise ChangeRejectedError("ORDER_NOT_FOUND", f"no order has number {number}", "number")
        if order_id not in (None, numbered):
            # Two orders named: which one the sender meant is not for c360 to guess.
            raise ChangeRejectedError(
                "ORDER_NUMBER_MISMATCH", f"order {order_id} does not have number {number}", "number"
            )
        order_id = numbered
    assert order_id is not None  # the schema requires an order_id or a number
    return await orders.change_order_status(
        changes,
        order_id=order_id,
        status=data["status"],
        tracking_number=data.get("tracking_number"),
        customer_id=customer_id,
        origin=event,
    )


def _interaction_of(event: Event) -> dict[str, Any]:
    data = event.data
    return {
        "_id": ObjectId(),
        "type": data["type"],
        "channel": data["channel"],
        "occurred_at": dt.datetime.fromisoformat(data["occurred_at"]),
        "attributes": {k: str(v) for k, v in (data.get("attributes") or {}).items()},
    }


def _abandoned_cart_of(event: Event) -> dict[str, Any]:
    data = event.data
    # Kept as the sender wrote it, once it is an amount of its currency.
    _minor(str(data["value"]), data["currency"], "value")
    for item in data["items"]:
        if "unit_price" in item:
            _minor(str(item["unit_price"]), data["currency"], "unit_price")
    return {
        "_id": ObjectId(),
        "type": "CART_ABANDONED",
        "channel": "WEB",
        "occurred_at": event.time,
        "attributes": {
            "cart_id": str(data["cart_id"]),
            "items": str(len(data["items"])),
            "value": f"{data['value']} {data['currency']}",
        },
    }


# The event types that record an interaction on the timeline, and the interaction each makes.
INTERACTIONS: dict[str, Callable[[Event], dict[str, Any]]] = {
    "interaction.recorded": _interaction_of,
    "cart.abandoned": _abandoned_cart_of,
}


async def _interaction(changes: Changes, event: Event, customer_id: int) -> Any:
    return await engagement.record_interaction(
        changes,
        customer_id=customer_id,
        interaction=INTERACTIONS[event.type](event),
        origin=event,
    )


async def _ticket(changes: Changes, event: Event, customer_id: int) -> Any:
    data = event.data
    eta = data.get("eta")
    return await tickets.change_ticket_status(
        changes,
        customer_id=customer_id,
        ticket_id=str(data["ticket_id"]),
        status=data["status"],
        assignee=data.get("assignee"),
        eta=dt.datetime.fromisoformat(eta) if eta else None,
        note=data.get("note"),
        origin=event,
    )


async def _consent(changes: Changes, event: Event, customer_id: int) -> Any:
    return await engagement.change_consent(
        changes,
        customer_id=customer_id,
        channel=event.data["channel"],
        granted=bool(event.data["granted"]),
        origin=event,
    )


APPLIERS: dict[str, Applier] = {
    "customer.contact_changed": _contact,
    "customer.address_changed": _address,
    "order.placed": _order_placed,
    "order.status_changed": _order_status,
    "cart.abandoned": _interaction,
    "interaction.recorded": _interaction,
    "ticket.status_changed": _ticket,
    "consent.changed": _consent,
}


async def apply_event(changes: Changes, event: Event) -> bool:
    """Apply one validated upstream event; False when it was applied before."""
    applier = APPLIERS.get(event.type)
    if applier is None:
        raise ChangeRejectedError("UNKNOWN_TYPE", f"no applier for {event.type}", "type")
    try:
        customer_id = int(event.subject)
    except ValueError as error:
        raise ChangeRejectedError(
            "INVALID_SUBJECT", "subject must be a customer id", "subject"
        ) from error
    try:
        try:
            await applier(changes, event, customer_id)
        except ChangeRejectedError as error:
            if error.code != "CUSTOMER_MERGED":
                raise
            # Merged between finding the customer and locking it: the second try finds the
            # survivor first (or is refused again, as a contact change about one is).
            await applier(changes, event, customer_id)
    except DuplicateEventError:
        return False
    return True


async def apply_interactions(
    changes: Changes, unique_ids: UniqueIds, runs: Sequence[Sequence[Event]]
) -> list[list[bool] | None]:
    """Apply many subjects' runs of validated events that record interactions at once
    (`engagement.record_interactions`): per run, per event True (applied) or False (applied
    before), or None for a run to apply event by event with `apply_event` (which also
    answers an event whose data cannot apply with its reason). Every run is None while the
    outbox's unique index on event ids is not known to be in place."""
    answers: list[list[bool] | None] = [None] * len(runs)
    if not await unique_ids.hold():
        return answers
    prepared: list[list[engagement.Recording]] = []
    convertible: list[int] = []
    for index, run in enumerate(runs):
        try:
            prepared.append([(event, INTERACTIONS[event.type](event)) for event in run])
        except (ChangeRejectedError, KeyError, ValueError):
            continue
        convertible.append(index)
    if prepared:
        for index, answer in zip(
            convertible, await engagement.record_interactions(changes, prepared), strict=True
        ):
            answers[index] = answer
    return answers


def pipeline(changes: Changes, registry: SchemaRegistry, *, grouped: bool) -> Ingestion:
    """The ingestion pipeline over `changes`' stores: events applied by `apply_event`, with
    `grouped` those that record interactions many at once (`apply_interactions`, while the
    outbox's unique index on event ids is in place), dead letters kept in SQL."""
    return Ingestion(
        registry,
        apply=functools.partial(apply_event, changes),
        keep=functools.partial(keep_in_sql, changes.engine),
        grouped=Grouped(
            frozenset(INTERACTIONS),
            functools.partial(apply_interactions, changes, UniqueIds(changes.db)),
        )
        if grouped
        else None,
    )
