"""Writes to the system of record; each runs inside the caller's transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sources.sql import models
from sources.sql.records import CustomerRecord, OrderRecord


async def lock_customer(*, connection: AsyncConnection, customer_id: int) -> CustomerRecord | None:
    """The customer, locked until the transaction ends (None when unknown).

    Every write about a customer takes this lock first, so one customer's changes commit, and
    enter the outbox, one after another: that is what keeps their events in order.
    """
    table = models.table(models.Customer)
    if connection.dialect.name == "sqlite":
        # SQLite has no row locks, and its driver begins a transaction only at the first
        # write: a read here would see the row as it is now, not as it is when the transaction
        # writes, and two merges of one customer could both find it active. A write that
        # changes nothing takes the database's write lock now, held until the transaction ends.
        await connection.execute(
            update(table).where(table.c.id == customer_id).values(id=table.c.id)
        )
    row = (
        await connection.execute(select(table).where(table.c.id == customer_id).with_for_update())
    ).first()
    return CustomerRecord(*row) if row else None


async def update_customer(
    *, connection: AsyncConnection, customer_id: int, values: dict[str, Any], at: dt.datetime
) -> CustomerRecord:
    """Set some of a customer's columns; returns the updated record."""
    table = models.table(models.Customer)
    await connection.execute(
        update(table).where(table.c.id == customer_id).values(**values, updated_at=at)
    )
    row = (await connection.execute(select(table).where(table.c.id == customer_id))).one()
    return CustomerRecord(*row)


async def email_owner(*, connection: AsyncConnection, email: str) -> int | None:
    """The id of the customer using `email`, if any."""
    table = models.table(models.Customer)
    return (
        await connection.execute(select(table.c.id).where(table.c.email == email))
    ).scalar_one_or_none()


async def order_for_update(*, connection: AsyncConnection, order_id: int) -> OrderRecord | None:
    """An order, locked until the transaction ends."""
    table = models.table(models.Order)
    row = (
        await connection.execute(select(table).where(table.c.id == order_id).with_for_update())
    ).first()
    return OrderRecord(*row) if row else None


async def set_order_status(
    *,
    connection: AsyncConnection,
    order_id: int,
    status: str,
    tracking_number: str | None,
    at: dt.datetime,
) -> OrderRecord:
    """Move an order to `status`; returns the updated record."""
    table = models.table(models.Order)
    values: dict[str, Any] = {"status": status, "updated_at": at}
    if tracking_number is not None:
        values["tracking_number"] = tracking_number
    await connection.execute(update(table).where(table.c.id == order_id).values(**values))
    row = (await connection.execute(select(table).where(table.c.id == order_id))).one()
    return OrderRecord(*row)


async def upsert_address(
    *, connection: AsyncConnection, customer_id: int, values: dict[str, Any], at: dt.datetime
) -> None:
    """Set the customer's address of one kind (replacing the one there was)."""
    table = models.table(models.Address)
    kind = values["kind"]
    updated = await connection.execute(
        update(table)
        .where(table.c.customer_id == customer_id, table.c.kind == kind)
        .values(**values, updated_at=at)
    )
    if updated.rowcount == 0:
        await connection.execute(
            table.insert().values(customer_id=customer_id, **values, updated_at=at)
        )


async def insert_order(
    *, connection: AsyncConnection, order: dict[str, Any], lines: list[dict[str, Any]]
) -> None:
    """Add an order and its lines."""
    await connection.execute(models.table(models.Order).insert().values(**order))
    if lines:
        await connection.execute(models.table(models.OrderLine).insert(), lines)


async def known_skus(*, connection: AsyncConnection, skus: list[str]) -> set[str]:
    """Which of `skus` are in the catalogue."""
    table = models.table(models.Product)
    rows = await connection.execute(select(table.c.sku).where(table.c.sku.in_(skus)))
    return {sku for (sku,) in rows}


async def order_owners(*, connection: AsyncConnection, order_id: int, number: str) -> set[int]:
    """The customers holding an order with this id or this number (none, one, or two)."""
    table = models.table(models.Order)
    rows = await connection.execute(
        select(table.c.customer_id).where((table.c.id == order_id) | (table.c.number == number))
    )
    return {customer_id for (customer_id,) in rows}


async def order_id_by_number(*, connection: AsyncConnection, number: str) -> int | None:
    """The id of the order with this customer-facing number."""
    table = models.table(models.Order)
    return (
        await connection.execute(select(table.c.id).where(table.c.number == number))
    ).scalar_one_or_none()


async def delete_address(*, connection: AsyncConnection, customer_id: int, kind: str) -> bool:
    """Remove the customer's address of one kind; False when there was none."""
    table = models.table(models.Address)
    result = await connection.execute(
        table.delete().where(table.c.customer_id == customer_id, table.c.kind == kind)
    )
    return bool(result.rowcount)
