"""Batched reads of the system of record: each function is one round trip for many keys.

Statements are built once, at import, with expanding bind parameters for the key lists:
building and cache-keying a SQLAlchemy statement costs more than SQLite takes to run it.
Reads go through a Core connection rather than an ORM session: they return plain records,
so the session's identity map and unit of work would be pure overhead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import BindParameter, Select, and_, bindparam, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

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

_keys: BindParameter[Any] = bindparam("keys", expanding=True)


def _columns(model: type[models.Base]) -> list[Any]:
    return list(model.__table__.columns)


async def _records(
    connection: AsyncConnection, record: type[R], stmt: Select[Any], **params: Any
) -> list[R]:
    result = await connection.execute(stmt, params)
    return [record(*row) for row in result]


def _by_key(items: Iterable[R], attr: str, keys: Sequence[Any]) -> list[R | None]:
    found = {getattr(item, attr): item for item in items}
    return [found.get(key) for key in keys]


def _grouped(items: Iterable[R], attr: str, keys: Sequence[Any]) -> list[list[R]]:
    groups: dict[Any, list[R]] = {key: [] for key in keys}
    for item in items:
        groups[getattr(item, attr)].append(item)
    return [groups[key] for key in keys]


# Each select lists the model's columns in table order, which is the record's field order.
_CUSTOMERS = select(*_columns(models.Customer)).where(models.Customer.id.in_(_keys))
_CUSTOMERS_BY_EMAIL = select(*_columns(models.Customer)).where(models.Customer.email.in_(_keys))
_ADDRESSES = (
    select(*_columns(models.Address))
    .where(models.Address.customer_id.in_(_keys))
    .order_by(models.Address.customer_id, models.Address.kind)
)
_PRODUCTS = select(*_columns(models.Product)).where(models.Product.sku.in_(_keys))
_ORDERS = select(*_columns(models.Order)).where(models.Order.id.in_(_keys))
_LINES = (
    select(*_columns(models.OrderLine))
    .where(models.OrderLine.order_id.in_(_keys))
    .order_by(models.OrderLine.order_id, models.OrderLine.line_number)
)


async def customers_by_ids(
    *, connection: AsyncConnection, ids: Sequence[int]
) -> list[CustomerRecord | None]:
    """Customers in key order, None where no customer has that id."""
    found = await _records(connection, CustomerRecord, _CUSTOMERS, keys=list(set(ids)))
    return _by_key(found, "id", ids)


async def customers_by_emails(
    *, connection: AsyncConnection, emails: Sequence[str]
) -> list[CustomerRecord | None]:
    """The customer holding each (normalised) email, None where none does."""
    found = await _records(connection, CustomerRecord, _CUSTOMERS_BY_EMAIL, keys=list(set(emails)))
    return _by_key(found, "email", emails)


async def addresses_by_customer_ids(
    *, connection: AsyncConnection, ids: Sequence[int]
) -> list[list[AddressRecord]]:
    """Each customer's addresses, in a stable kind order."""
    found = await _records(connection, AddressRecord, _ADDRESSES, keys=list(set(ids)))
    return _grouped(found, "customer_id", ids)


async def products_by_skus(
    *, connection: AsyncConnection, skus: Sequence[str]
) -> list[ProductRecord | None]:
    """Products in key order, None for an unknown SKU."""
    found = await _records(connection, ProductRecord, _PRODUCTS, keys=list(set(skus)))
    return _by_key(found, "sku", skus)


async def orders_by_ids(
    *, connection: AsyncConnection, ids: Sequence[int]
) -> list[OrderRecord | None]:
    """Orders in key order, None where no order has that id."""
    found = await _records(connection, OrderRecord, _ORDERS, keys=list(set(ids)))
    return _by_key(found, "id", ids)


async def order_lines_by_order_ids(
    *, connection: AsyncConnection, ids: Sequence[int]
) -> list[list[OrderLineRecord]]:
    """Each order's lines in line order."""
    found = await _records(connection, OrderLineRecord, _LINES, keys=list(set(ids)))
    return _grouped(found, "order_id", ids)


def _order_page_statement(*, filtered: bool, after: bool) -> Select[Any]:
    """The page query for one shape of page arguments; values come as bind parameters.

    A window function numbers each customer's orders, those after the cursor first, so every
    customer with orders yields at least one row (and so its total count) even when the
    cursor is past its last order; such a row is only a carrier of the total.
    """
    order = models.Order
    where = [order.customer_id.in_(_keys)]
    if filtered:
        where.append(order.status.in_(bindparam("statuses", expanding=True)))
    ranking: list[Any] = [order.placed_at.desc(), order.id.desc()]
    is_after: Any = literal(1)
    if after:
        at = bindparam("after_at", type_=models.UTCDateTime())
        last_id: BindParameter[int] = bindparam("after_id")
        is_after = case(
            (or_(order.placed_at < at, and_(order.placed_at == at, order.id < last_id)), 1),
            else_=0,
        )
        ranking.insert(0, is_after.desc())
    numbered = (
        select(
            *_columns(order),
            func.count().over(partition_by=order.customer_id).label("total"),
            func.row_number().over(partition_by=order.customer_id, order_by=ranking).label("rn"),
            is_after.label("is_after"),
        )
        .where(*where)
        .subquery()
    )
    return (
        select(numbered)
        .where(numbered.c.rn <= bindparam("limit"))
        .order_by(numbered.c.customer_id, numbered.c.rn)
    )


_ORDER_PAGES = {
    (filtered, after): _order_page_statement(filtered=filtered, after=after)
    for filtered in (False, True)
    for after in (False, True)
}
_ORDER_FIELDS = len(models.Order.__table__.columns)


async def order_pages(
    *, connection: AsyncConnection, keys: Sequence[PageKey]
) -> list[Page[OrderRecord]]:
    """A page of each customer's orders, newest first, with the customer's total count.

    `filters` of a key are the statuses to keep (all when empty). One statement per group of
    keys sharing page arguments.
    """

    async def run(owners: list[int], template: PageKey) -> list[PageRow[OrderRecord]]:
        params: dict[str, Any] = {"keys": owners, "limit": template.first + 1}
        if template.filters:
            params["statuses"] = list(template.filters)
        if template.after is not None:
            params["after_at"] = template.after.at
            params["after_id"] = int(template.after.id)
        stmt = _ORDER_PAGES[(bool(template.filters), template.after is not None)]
        rows: list[PageRow[OrderRecord]] = []
        for row in await connection.execute(stmt, params):
            record = OrderRecord(*row[:_ORDER_FIELDS])
            total, _rn, after_row = row[_ORDER_FIELDS:]
            if after_row:
                position = Position(at=record.placed_at, id=str(record.id))
                rows.append(PageRow(record.customer_id, record, position, total))
            else:
                rows.append(PageRow(record.customer_id, None, None, total))
        return rows

    return await group_pages(keys, run, counted=True)


class Contact(NamedTuple):
    """How a lookup names a customer: `email` (normalised), `phone` (E.164) or `id`."""

    field: str
    value: str | int


_CONTACT_FIELDS = ("email", "phone", "id")


def _contact_statement(fields: tuple[str, ...]) -> Select[Any]:
    customer = models.Customer
    return select(*_columns(customer)).where(
        or_(*(getattr(customer, f).in_(bindparam(f, expanding=True)) for f in fields))
    )


# One statement per combination of the fields asked, so no branch is an always-false IN ()
# that could keep the planner from using each field's index.
_CUSTOMERS_BY_CONTACT = {
    fields: _contact_statement(fields)
    for size in range(1, len(_CONTACT_FIELDS) + 1)
    for fields in itertools.combinations(_CONTACT_FIELDS, size)
}


async def customers_by_contacts(
    *, connection: AsyncConnection, keys: Sequence[Contact]
) -> list[list[CustomerRecord]]:
    """The customers each contact names (several may share a phone), in one statement."""
    wanted: dict[str, set[str | int]] = {f: set() for f in _CONTACT_FIELDS}
    for key in keys:
        wanted[key.field].add(key.value)
    fields = tuple(f for f in _CONTACT_FIELDS if wanted[f])
    found: dict[Contact, list[CustomerRecord]] = {}
    if fields:
        stmt = _CUSTOMERS_BY_CONTACT[fields]
        params = {f: list(wanted[f]) for f in fields}
        for record in await _records(connection, CustomerRecord, stmt, **params):
            for field in fields:
                found.setdefault(Contact(field, getattr(record, field)), []).append(record)
    return [sorted(found.get(key, []), key=lambda r: r.id) for key in keys]
