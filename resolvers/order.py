"""Orders, their lines and products (SQL), and the shipment each order is tracked by."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from graphql import GraphQLError

from domain.principal import Scope
from resolvers.access import check_entity, readable, refusals
from resolvers.common import (
    Info,
    Money,
    PageInfo,
    edge_cursor,
    load,
    load_each,
    loaded,
    parse_id,
)
from resolvers.enums import Channel, OrderStatus
from resolvers.vendor import Shipment
from sources.paging import Page, PageKey, Position
from sources.sql.records import OrderLineRecord, OrderRecord, ProductRecord
from sources.thirdparty.tracking import ShipmentRecord

if TYPE_CHECKING:
    from resolvers.customer import Customer


@strawberry.federation.type(description="An item of the product catalogue.", keys=["sku"])
class Product:
    # Record-backed, as `Order` is.
    record: strawberry.Private[ProductRecord]

    @strawberry.field(description="Stock keeping unit, the product's key.")
    def sku(self) -> str:
        return self.record.sku

    @strawberry.field(description="Display name.")
    def name(self) -> str:
        return self.record.name

    @strawberry.field(description="Catalogue category.")
    def category(self) -> str:
        return self.record.category

    @strawberry.field(description="Current list price.")
    def price(self) -> Money:
        return Money.from_minor(self.record.price_minor, self.record.currency)

    @strawberry.field(description="Units on hand now.")
    def stock(self) -> int:
        return self.record.stock

    @classmethod
    async def resolve_references(
        cls, info: Info, representations: list[dict[str, Any]]
    ) -> list[Product | Exception | None]:
        """The products of federation representations `{sku}`, in order, for whoever may read
        orders (products are reached through orders): one loader batch for all of them."""
        if refused := refusals(info, Scope.ORDERS, len(representations)):
            return [*refused]
        records = await load_each(
            info, info.context.loaders.sql.product_by_sku, [r["sku"] for r in representations]
        )
        return [
            r if isinstance(r, Exception) else Product.from_record(r) if r else None
            for r in records
        ]

    @classmethod
    def from_record(cls, record: ProductRecord) -> Product:
        return cls(record=record)


@strawberry.type(description="One line of an order: a product, a quantity and its price.")
class OrderLine:
    # Record-backed, as `Order` is.
    record: strawberry.Private[OrderLineRecord]
    currency: strawberry.Private[str]

    @strawberry.field(description="Position of the line in the order, from 1.")
    def line_number(self) -> int:
        return self.record.line_number

    @strawberry.field(description="Units ordered.")
    def quantity(self) -> int:
        return self.record.quantity

    @strawberry.field(description="Price of one unit when ordered.")
    def unit_price(self) -> Money:
        return Money.from_minor(self.record.unit_price_minor, self.currency)

    @loaded(
        lambda loaders: loaders.sql.product_by_sku,
        key=lambda line: line.record.sku,
        description="The product ordered.",
    )
    def product(self, record: ProductRecord | None) -> Product | None:
        return Product.from_record(record) if record else None

    @strawberry.field(description="quantity times unitPrice.")
    def subtotal(self) -> Money:
        return Money.from_minor(self.record.quantity * self.record.unit_price_minor, self.currency)

    @classmethod
    def from_record(cls, record: OrderLineRecord, currency: str) -> OrderLine:
        return cls(record=record, currency=currency)


@strawberry.federation.type(
    description="A customer's order, from the system of record.", keys=["id"]
)
class Order:
    """Record-backed: each field is read from the record when it is asked for (an agent's
    view of an order asks for five of its eleven)."""

    record: strawberry.Private[OrderRecord]

    @strawberry.field(description="Order id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.record.id))

    @strawberry.field(description="The order number the customer sees.")
    def number(self) -> str:
        return self.record.number

    @strawberry.field(description="Where the order is in its life.")
    def status(self) -> OrderStatus:
        return OrderStatus.of(self.record.status)

    @strawberry.field(description="Where the order was placed.")
    def channel(self) -> Channel:
        return Channel.of(self.record.channel)

    @strawberry.field(description="Order total, taxes included.")
    def total(self) -> Money:
        return Money.from_minor(self.record.total_minor, self.record.currency)

    @strawberry.field(description="The carrier's tracking number once shipped.")
    def tracking_number(self) -> str | None:
        return self.record.tracking_number

    @strawberry.field(description="When the order was placed.")
    def placed_at(self) -> dt.datetime:
        return self.record.placed_at

    @strawberry.field(description="When the order last changed.")
    def updated_at(self) -> dt.datetime:
        return self.record.updated_at

    @loaded(
        lambda loaders: loaders.sql.lines_by_order_id,
        key=lambda order: order.record.id,
        description="The order's lines, in order.",
        metadata={"list_size": 10},
    )
    def lines(self, records: list[OrderLineRecord] | None) -> list[OrderLine]:
        return [OrderLine.from_record(r, self.record.currency) for r in records or []]

    @loaded(
        lambda loaders: loaders.vendor.shipment_by_tracking_number,
        key=lambda order: order.record.tracking_number or None,  # none before shipping
        description="The parcel as the carrier tracks it; null before shipping or when the "
        "carrier API cannot answer (see the error on this path).",
        extensions=[readable(Scope.SHIPMENTS)],
    )
    def shipment(self, record: ShipmentRecord | None) -> Shipment | None:
        return Shipment.from_record(record) if record else None

    @strawberry.field(
        description="The customer who placed the order.", extensions=[readable(Scope.CUSTOMERS)]
    )
    async def customer(
        self, info: Info
    ) -> Annotated[Customer, strawberry.lazy("resolvers.customer")] | None:
        from resolvers.customer import Customer

        record = await load(info, info.context.loaders.sql.customer_by_id, self.record.customer_id)
        return Customer.from_record(record) if record else None

    @classmethod
    async def resolve_references(
        cls, info: Info, representations: list[dict[str, Any]]
    ) -> list[Order | Exception | None]:
        """The orders of federation representations `{id}`, in order, through one loader
        batch; a customer principal only reaches its own orders."""
        if refused := refusals(info, Scope.ORDERS, len(representations)):
            return [*refused]
        numbers = [parse_id(r["id"]) for r in representations]
        wanted = [n for n in numbers if n is not None]
        records = await load_each(info, info.context.loaders.sql.order_by_id, wanted)
        loaded = dict(zip(wanted, records, strict=True))
        orders: list[Order | Exception | None] = []
        for number in numbers:
            record = loaded.get(number) if number is not None else None
            if isinstance(record, Exception):
                orders.append(record)
                continue
            try:
                check_entity(info, Scope.ORDERS, record.customer_id if record else None)
            except GraphQLError as error:
                orders.append(error)
            else:
                orders.append(Order.from_record(record) if record else None)
        return orders

    @classmethod
    def from_record(cls, record: OrderRecord) -> Order:
        OrderStatus.check(record.status)
        Channel.check(record.channel)
        return cls(record=record)


@strawberry.type(description="An order with the cursor that points at it.")
class OrderEdge:
    position: strawberry.Private[Position]
    cursor: str = strawberry.field(resolver=edge_cursor, description="Opaque cursor of this order.")
    node: Order = strawberry.field(description="The order.")


@strawberry.type(description="A page of a customer's orders, newest first.")
class OrderConnection:
    edges: list[OrderEdge] = strawberry.field(description="The orders of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page sits.")
    total_count: int = strawberry.field(
        description="How many orders match the filter, over all pages."
    )

    @classmethod
    def from_page(cls, page: Page[OrderRecord], key: PageKey) -> OrderConnection:
        return cls(
            edges=[
                OrderEdge(position=p, node=Order.from_record(r))
                for p, r in zip(page.positions, page.items, strict=True)
            ],
            page_info=PageInfo.of(page, key),
            total_count=page.total_count or 0,
        )
