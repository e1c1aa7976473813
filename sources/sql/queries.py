"""Batched reads of the system of record: each function is one round trip for many keys."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sources.paging import Page, PageKey, PageRow, Position, group_pages
from sources.sql import models
from sources.sql.records import (
    AddressRecord,
    CustomerRecord,
    OrderLineRecord,
    OrderRecord,
    ProductRecord,
)

R = TypeVar("R")


def _columns(model: type[models.Base]) -> list[Any]:
    return list(model.__table__.columns)


async def _records(session: AsyncSession, record: type[R], stmt: Select[Any]) -> list[R]:
    result = await session.execute(stmt)
    return [record(**row._mapping) for row in result]


def _by_key(items: Iterable[R], attr: str, keys: Sequence[Any]) -> list[R | None]:
    found = {getattr(item, attr): item for item in items}
    return [found.get(key) for key in keys]


def _grouped(items: Iterable[R], attr: str, keys: Sequence[Any]) -> list[list[R]]:
    groups: dict[Any, list[R]] = {key: [] for key in keys}
    for item in items:
        groups[getattr(item, attr)].append(item)
    return [groups[key] for key in keys]


async def customers_by_ids(
    *, session: AsyncSession, ids: Sequence[int]
) -> list[CustomerRecord | None]:
    """Customers in key order, None where no customer has that id."""
    stmt = select(*_columns(models.Customer)).where(models.Customer.id.in_(set(ids)))
    return _by_key(await _records(session, CustomerRecord, stmt), "id", ids)


async def addresses_by_customer_ids(
    *, session: AsyncSession, ids: Sequence[int]
) -> list[list[AddressRecord]]:
    """Each customer's addresses, in a stable kind order."""
    stmt = (
        select(*_columns(models.Address))
        .where(models.Address.customer_id.in_(set(ids)))
        .order_by(models.Address.customer_id, models.Address.kind)
    )
    return _grouped(await _records(session, AddressRecord, stmt), "customer_id", ids)


async def products_by_skus(
    *, session: AsyncSession, skus: Sequence[str]
) -> list[ProductRecord | None]:
    """Products in key order, None for an unknown SKU."""
    stmt = select(*_columns(models.Product)).where(models.Product.sku.in_(set(skus)))
    return _by_key(await _records(session, ProductRecord, stmt), "sku", skus)


async def orders_by_ids(*, session: AsyncSession, ids: Sequence[int]) -> list[OrderRecord | None]:
    """Orders in key order, None where no order has that id."""
    stmt = select(*_columns(models.Order)).where(models.Order.id.in_(set(ids)))
    return _by_key(await _records(session, OrderRecord, stmt), "id", ids)


async def order_lines_by_order_ids(
    *, session: AsyncSession, ids: Sequence[int]
) -> list[list[OrderLineRecord]]:
    """Each order's lines in line order."""
    stmt = (
        select(*_columns(models.OrderLine))
        .where(models.OrderLine.order_id.in_(set(ids)))
        .order_by(models.OrderLine.order_id, models.OrderLine.line_number)
    )
    return _grouped(await _records(session, OrderLineRecord, stmt), "order_id", ids)


async def order_pages(*, session: AsyncSession, keys: Sequence[PageKey]) -> list[Page[OrderRecord]]:
    """A page of each customer's orders, newest first, with the customer's total count.

    `filters` of a key are the statuses to keep (all when empty). One statement per group of
    keys sharing page arguments: a window function numbers each customer's orders, rows after
    the cursor first, so every customer with orders yields at least one row (and so its total)
    even when the cursor is past its last order.
    """
    order = models.Order

    async def run(owners: list[int], template: PageKey) -> list[PageRow[OrderRecord]]:
        where = [order.customer_id.in_(owners)]
        if template.filters:
            where.append(order.status.in_(template.filters))
        ranking: list[Any] = [order.placed_at.desc(), order.id.desc()]
        is_after: Any = literal(1)
        if template.after is not None:
            at, last_id = template.after.at, int(template.after.id)
            is_after = case(
                (or_(order.placed_at < at, and_(order.placed_at == at, order.id < last_id)), 1),
                else_=0,
            )
            ranking.insert(0, is_after.desc())
        numbered = (
            select(
                *_columns(order),
                func.count().over(partition_by=order.customer_id).label("total"),
                func.row_number()
                .over(partition_by=order.customer_id, order_by=ranking)
                .label("rn"),
                is_after.label("is_after"),
            )
            .where(*where)
            .subquery()
        )
        stmt = (
            select(numbered)
            .where(numbered.c.rn <= template.first + 1)
            .order_by(numbered.c.customer_id, numbered.c.rn)
        )
        rows: list[PageRow[OrderRecord]] = []
        for row in await session.execute(stmt):
            values = dict(row._mapping)
            total, after_row = values.pop("total"), values.pop("is_after")
            del values["rn"]
            record = OrderRecord(**values)
            if after_row:
                position = Position(at=record.placed_at, id=str(record.id))
                rows.append(PageRow(record.customer_id, record, position, total))
            else:
                rows.append(PageRow(record.customer_id, None, None, total))
        return rows

    return await group_pages(keys, run, counted=True)
