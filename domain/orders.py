"""Orders: placed upstream, and moved through their statuses."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.changes import (
    Changes,
    change_event,
    lock_customer,
    require_subjects,
    sql_transaction,
)
from domain.errors import (
    ChangeRejectedError,
    DuplicateEventError,
    not_the_subjects,
)
from domain.vocabulary import ORDER_TRANSITIONS
from sources.events.envelope import Event
from sources.events.outbox import (
    add_to_sql_outbox,
    in_sql_outbox,
)
from sources.sql import loaders as sql_loaders
from sources.sql import writes
from sources.sql.queries import orders_by_ids
from sources.sql.records import OrderRecord
from sources.sql.source import SQL


async def _lock_order(connection: AsyncConnection, order_id: int) -> OrderRecord:
    """The order, locked after its customer: customer first, as merges (which move orders
    between customers) lock them, so the two cannot deadlock."""
    while True:
        [order] = await orders_by_ids(connection=connection, ids=[order_id])
        if order is None:
            raise ChangeRejectedError("ORDER_NOT_FOUND", f"no order has id {order_id}", "orderId")
        await writes.lock_customer(connection=connection, customer_id=order.customer_id)
        locked = await writes.order_for_update(connection=connection, order_id=order_id)
        if locked is not None and locked.customer_id == order.customer_id:
            return locked
        # A merge moved the order to another customer meanwhile: lock that one instead.


async def change_order_status(
    changes: Changes,
    *,
    order_id: int,
    status: str,
    tracking_number: str | None = None,
    customer_id: int | None = None,
    origin: Event | None = None,
) -> tuple[OrderRecord, Event]:
    """Move an order to a new status, if that is a legal transition; with `customer_id` (an
    upstream event's subject), only an order of that customer or of its survivor."""
    if status not in ORDER_TRANSITIONS:
        raise ChangeRejectedError("INVALID_STATUS", f"unknown order status {status!r}", "status")
    at = dt.datetime.now(dt.UTC)
    async with sql_transaction(changes, origin) as connection:
        order = await _lock_order(connection, order_id)
        if customer_id is not None:
            # Checked with the order's customer locked: no merge moves the order meanwhile.
            name = f"{order_id} ({order.number})"
            await require_subjects(
                connection, customer_id, order.customer_id, "order", name, "orderId"
            )
        if status not in ORDER_TRANSITIONS[order.status]:
            allowed = ", ".join(sorted(ORDER_TRANSITIONS[order.status])) or "none"
            raise ChangeRejectedError(
                "ILLEGAL_TRANSITION",
                f"an order in {order.status} cannot become {status} (allowed: {allowed})",
                "status",
            )
        record = await writes.set_order_status(
            connection=connection,
            order_id=order_id,
            status=status,
            tracking_number=tracking_number,
            at=at,
        )
        data = {
            "order_id": str(order_id),
            "number": record.number,
            "status": status,
            "previous_status": order.status,
        }
        if record.tracking_number:
            data["tracking_number"] = record.tracking_number
        event = change_event("order.status_changed", order.customer_id, data, at, origin)
        await add_to_sql_outbox(connection=connection, events=[event])
    await changes.invalidate(SQL, sql_loaders.ORDER, keys=[order_id])
    await changes.invalidate(SQL, sql_loaders.ORDER_PAGE, owners=[record.customer_id])
    changes.published()
    return record, event


async def place_order(
    changes: Changes,
    *,
    customer_id: int,
    order_id: int,
    number: str,
    channel: str,
    currency: str,
    total_minor: int,
    lines: list[dict[str, Any]],
    placed_at: dt.datetime,
    origin: Event | None = None,
) -> Event:
    """Record an order placed upstream (the webshop, a store)."""
    subject = customer_id
    async with sql_transaction(changes, origin) as connection:
        customer_id = (await lock_customer(connection, customer_id, origin)).id
        skus = [line["sku"] for line in lines]
        unknown = set(skus) - await writes.known_skus(connection=connection, skus=skus)
        if unknown:
            raise ChangeRejectedError(
                "UNKNOWN_PRODUCT", f"unknown SKUs: {', '.join(sorted(unknown))}", "lines"
            )
        try:
            # The unique id and number decide, in a savepoint: a check before the insert could
            # not see another customer's transaction (its lock is not ours) taking them.
            async with connection.begin_nested():
                await writes.insert_order(
                    connection=connection,
                    order={
                        "id": order_id,
                        "customer_id": customer_id,
                        "number": number,
                        "status": "PLACED",
                        "channel": channel,
                        "total_minor": total_minor,
                        "currency": currency,
                        "tracking_number": None,
                        "placed_at": placed_at,
                        "updated_at": placed_at,
                    },
                    lines=[
                        {"order_id": order_id, "line_number": n, **line}
                        for n, line in enumerate(lines, 1)
                    ],
                )
        except IntegrityError:
            await _refuse_taken_order(
                connection,
                order_id,
                number,
                subject=subject,
                customer_id=customer_id,
                origin=origin,
            )
            raise
        data = {"order_id": str(order_id), "number": number, "status": "PLACED"}
        event = change_event("order.placed", customer_id, data, placed_at, origin)
        await add_to_sql_outbox(connection=connection, events=[event])
    await changes.invalidate(SQL, sql_loaders.ORDER_PAGE, owners=[customer_id])
    changes.published()
    return event


async def _refuse_taken_order(
    connection: AsyncConnection,
    order_id: int,
    number: str,
    *,
    subject: int,
    customer_id: int,
    origin: Event | None,
) -> None:
    """Refuse an order whose id or number is taken: another customer's (an event about one
    customer never names another's order), or the customer's own placed by another event. The
    same event again is a duplicate (delivery is at least once)."""
    owners = await writes.order_owners(connection=connection, order_id=order_id, number=number)
    if not owners:
        return
    if origin is not None and await in_sql_outbox(connection=connection, event_id=origin.id):
        raise DuplicateEventError(origin.id)
    name = f"{order_id} ({number})"
    if owners != {customer_id}:
        raise not_the_subjects("order", name, subject, "orderId")
    raise ChangeRejectedError(
        "ORDER_EXISTS", f"customer {subject} has order {name} already", "orderId"
    )
