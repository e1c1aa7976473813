"""Per-request loaders over the SQL source: one session and one statement per batch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sources.cache.entity import EntityCache
from sources.dataloader import DataLoader, loader_property
from sources.loader import keyed_loader
from sources.paging import Page, PageKey
from sources.sql import queries, search
from sources.sql.queries import Contact
from sources.sql.records import (
    AddressRecord,
    CustomerRecord,
    OrderLineRecord,
    OrderRecord,
    ProductRecord,
)
from sources.sql.source import SQL

# Loader names: they appear in cache keys, and invalidations name them.
CUSTOMER, CUSTOMER_BY_EMAIL, ADDRESSES, PRODUCT, ORDER, ORDER_LINES, ORDER_PAGE = (
    "customer",
    "customer_by_email",
    "addresses",
    "product",
    "order",
    "order_lines",
    "order_page",
)
# Lookups and search read uncached (see their loaders): these names only label them.
CUSTOMERS_BY_CONTACT, CUSTOMER_SEARCH = "customers_by_contact", "customer_search"

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SqlLoaders:
    """The SQL loaders of one request, each made on first use (most requests need few)."""

    def __init__(self, engine: AsyncEngine, timeout: float, cache: EntityCache | None) -> None:
        self._engine = engine
        self._timeout = timeout
        self._cache = cache

    def _loader(
        self,
        name: str,
        query: Callable[[AsyncConnection, Sequence[K]], Awaitable[Sequence[V | None]]],
        *,
        tagged: bool = False,
        cached: bool = True,
    ) -> DataLoader[K, Any]:
        engine = self._engine

        # One pooled connection per batch call: never shared across concurrent tasks.
        async def batch(keys: Sequence[K]) -> Sequence[V | None]:
            async with engine.connect() as connection:
                return await query(connection, keys)

        cache = self._cache if cached else None
        return keyed_loader(SQL.name, self._timeout, batch, cache=cache, name=name, tagged=tagged)

    @loader_property
    def customer_by_id(self) -> DataLoader[int, CustomerRecord | None]:
        return self._loader(CUSTOMER, lambda c, k: queries.customers_by_ids(connection=c, ids=k))

    @loader_property
    def customer_by_email(self) -> DataLoader[str, CustomerRecord | None]:
        """The customer holding each email (normalised: trimmed, lower case), in one
        statement. Not cached: an email moves between customers, and a cache keyed by email
        would need every contact change to find the emails it freed."""
        return self._loader(
            CUSTOMER_BY_EMAIL,
            lambda c, k: queries.customers_by_emails(connection=c, emails=k),
            cached=False,
        )

    @loader_property
    def customers_by_contact(self) -> DataLoader[Contact, list[CustomerRecord] | None]:
        """The customers an email, phone or id names, for identity lookups: one statement
        for every contact of the batch. Not cached: emails and phones move between customers
        and merges change who holds them, and the records themselves are cached by id."""
        return self._loader(
            CUSTOMERS_BY_CONTACT,
            lambda c, k: queries.customers_by_contacts(connection=c, keys=k),
            cached=False,
        )

    @loader_property
    def customer_search_page(self) -> DataLoader[search.SearchKey, search.SearchPage | None]:
        """A page of customer search results. Not cached: any contact change anywhere may
        change any page, and a typed prefix is rarely asked twice."""
        return self._loader(
            CUSTOMER_SEARCH,
            lambda c, k: search.search_pages(connection=c, keys=k),
            cached=False,
        )

    @loader_property
    def addresses_by_customer_id(self) -> DataLoader[int, list[AddressRecord] | None]:
        return self._loader(
            ADDRESSES, lambda c, k: queries.addresses_by_customer_ids(connection=c, ids=k)
        )

    @loader_property
    def product_by_sku(self) -> DataLoader[str, ProductRecord | None]:
        return self._loader(PRODUCT, lambda c, k: queries.products_by_skus(connection=c, skus=k))

    @loader_property
    def order_by_id(self) -> DataLoader[int, OrderRecord | None]:
        return self._loader(ORDER, lambda c, k: queries.orders_by_ids(connection=c, ids=k))

    @loader_property
    def lines_by_order_id(self) -> DataLoader[int, list[OrderLineRecord] | None]:
        return self._loader(
            ORDER_LINES, lambda c, k: queries.order_lines_by_order_ids(connection=c, ids=k)
        )

    @loader_property
    def order_page_by_customer(self) -> DataLoader[PageKey, Page[OrderRecord] | None]:
        return self._loader(
            ORDER_PAGE, lambda c, k: queries.order_pages(connection=c, keys=k), tagged=True
        )
