"""Plain, immutable records the SQL source hands to the graph (and, later, to the cache)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    id: int
    first_name: str
    last_name: str
    email: str
    phone: str | None
    birth_date: dt.date | None
    status: str
    merged_into: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class AddressRecord:
    id: int
    customer_id: int
    kind: str
    line1: str
    line2: str | None
    city: str
    region: str | None
    postal_code: str
    country: str
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ProductRecord:
    sku: str
    name: str
    category: str
    price_minor: int
    currency: str
    stock: int


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: int
    customer_id: int
    number: str
    status: str
    channel: str
    total_minor: int
    currency: str
    tracking_number: str | None
    placed_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class OrderLineRecord:
    order_id: int
    line_number: int
    sku: str
    quantity: int
    unit_price_minor: int
