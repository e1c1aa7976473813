"""Per-request loaders over the SQL source: one session and one statement per batch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from aiodataloader import DataLoader
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sources.loader import keyed_loader
from sources.paging import Page, PageKey
from sources.roundtrips import SQL
from sources.sql import queries
from sources.sql.records import (
    AddressRecord,
    CustomerRecord,
    OrderLineRecord,
    OrderRecord,
    ProductRecord,
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class SqlLoaders:
    customer_by_id: DataLoader[int, CustomerRecord | None]
    addresses_by_customer_id: DataLoader[int, list[AddressRecord] | None]
    product_by_sku: DataLoader[str, ProductRecord | None]
    order_by_id: DataLoader[int, OrderRecord | None]
    lines_by_order_id: DataLoader[int, list[OrderLineRecord] | None]
    order_page_by_customer: DataLoader[PageKey, Page[OrderRecord] | None]


def create_sql_loaders(sessions: async_sessionmaker[AsyncSession], timeout: float) -> SqlLoaders:
    """Fresh loaders for one request (or one WebSocket operation)."""

    def loader(
        query: Callable[[AsyncSession, Sequence[K]], Awaitable[Sequence[V | None]]],
    ) -> DataLoader[K, V | None]:
        # One session per batch call: sessions are never shared across concurrent tasks.
        async def batch(keys: Sequence[K]) -> Sequence[V | None]:
            async with sessions() as session:
                return await query(session, keys)

        return keyed_loader(SQL, timeout, batch)

    return SqlLoaders(
        customer_by_id=loader(lambda s, k: queries.customers_by_ids(session=s, ids=k)),
        addresses_by_customer_id=loader(
            lambda s, k: queries.addresses_by_customer_ids(session=s, ids=k)
        ),
        product_by_sku=loader(lambda s, k: queries.products_by_skus(session=s, skus=k)),
        order_by_id=loader(lambda s, k: queries.orders_by_ids(session=s, ids=k)),
        lines_by_order_id=loader(lambda s, k: queries.order_lines_by_order_ids(session=s, ids=k)),
        order_page_by_customer=loader(lambda s, k: queries.order_pages(session=s, keys=k)),
    )
