"""Orders, their lines and products (SQL), and the shipment each order is tracked by."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry

from domain.principal import Scope
from resolvers.access import check_entity, check_readable, readable
from resolvers.common import Info, Money, PageInfo, load, loaded, parse_id
from resolvers.enums import Channel, OrderStatus
from resolvers.vendor import Shipment
from sources.paging import Page, PageKey
from sources.sql.records import OrderLineRecord, OrderRecord, ProductRecord
from sources.thirdparty.tracking import ShipmentRecord

if TYPE_CHECKING:
    from resolvers.customer import Customer


@strawberry.federation.type(description="An item of the product catalogue.", keys=["sku"])
class Product:
    sku: str = strawberry.field(description="Stock keeping unit, the product's key.")
    name: str = strawberry.field(description="Display name.")
    category: str = strawberry.field(description="Catalogue category.")
    price: Money = strawberry.field(description="Current list price.")
    stock: int = strawberry.field(description="Units on hand now.")

    @classmethod
    async def resolve_reference(cls, info: Info, sku: str) -> Product | None:
        """The product of a federation representation `{sku}`, for whoever may read orders
        (products are reached through orders), through the loader."""
        check_readable(info, Scope.ORDERS)
        record = await load(info, info.context.loaders.sql.product_by_sku, sku)
        return Product.from_record(record) if record else None

    @classmethod
    def from_record(cls, record: ProductRecord) -> Product:
        return cls(
            sku=record.sku,
            name=record.name,
            category=record.category,
            price=Money.from_minor(record.price_minor, record.currency),
            stock=record.stock,
        )


@strawberry.type(description="One line of an order: a product, a quantity and its price.")
class OrderLine:
    record: strawberry.Private[OrderLineRecord]
    currency: strawberry.Private[str]
    line_number: int = strawberry.field(description="Position of the line in the order, from 1.")
    quantity: int = strawberry.field(description="Units ordered.")
    unit_price: Money = strawberry.field(description="Price of one unit when ordered.")

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
        return cls(
            record=record,
            currency=currency,
            line_number=record.line_number,
            quantity=record.quantity,
            unit_price=Money.from_minor(record.unit_price_minor, currency),
        )


@strawberry.federation.type(
    description="A customer's order, from the system of record.", keys=["id"]
)
class Order:
    record: strawberry.Private[OrderRecord]
    id: strawberry.ID = strawberry.field(description="Order id.")
    number: str = strawberry.field(description="The order number the customer sees.")
    status: OrderStatus = strawberry.field(description="Where the order is in its life.")
    channel: Channel = strawberry.field(description="Where the order was placed.")
    total: Money = strawberry.field(description="Order total, taxes included.")
    tracking_number: str | None = strawberry.field(
        description="The carrier's tracking number once shipped."
    )
    placed_at: dt.datetime = strawberry.field(description="When the order was placed.")
    updated_at: dt.datetime = strawberry.field(description="When the order last changed.")

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
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Order | None:
        """The order of a federation representation `{id}`, through the loader; a customer
        principal only reaches its own orders."""
        check_readable(info, Scope.ORDERS)
        number = parse_id(id)
        record = await load(info, info.context.loaders.sql.order_by_id, number) if number else None
        check_entity(info, Scope.ORDERS, record.customer_id if record else None)
        return Order.from_record(record) if record else None

    @classmethod
    def from_record(cls, record: OrderRecord) -> Order:
        return cls(
            record=record,
            id=strawberry.ID(str(record.id)),
            number=record.number,
            status=OrderStatus.of(record.status),
            channel=Channel.of(record.channel),
            total=Money.from_minor(record.total_minor, record.currency),
            tracking_number=record.tracking_number,
            placed_at=record.placed_at,
            updated_at=record.updated_at,
        )


@strawberry.type(description="An order with the cursor that points at it.")
class OrderEdge:
    cursor: str = strawberry.field(description="Opaque cursor of this order.")
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
        page_info, cursors = PageInfo.of(page, key)
        return cls(
            edges=[
                OrderEdge(cursor=c, node=Order.from_record(r))
                for c, r in zip(cursors, page.items, strict=True)
            ],
            page_info=page_info,
            total_count=page.total_count or 0,
        )
