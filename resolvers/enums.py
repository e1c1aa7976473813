"""The enumerations of the graph; their values are the strings the stores keep."""

from __future__ import annotations

from enum import Enum
from typing import Self

import strawberry


class Stored(Enum):
    """An enumeration of values the stores keep."""

    @classmethod
    def of(cls, value: str) -> Self:
        """The member a stored value names, as `cls(value)` gives it (a ValueError for a value
        of no member) for the cost of a dictionary lookup: Enum's call machinery was a
        twentieth of a warm agent query, which converts about 75 stored values."""
        member = cls._value2member_map_.get(value)
        return cls(value) if member is None else member  # type: ignore[return-value]

    @classmethod
    def check(cls, value: str) -> None:
        """Raise `cls(value)`'s ValueError for a stored value of no member, and make nothing:
        a type built from a record refuses a record the graph cannot name whole, when it is
        made, and converts each value only when it is asked for."""
        if value not in cls._value2member_map_:
            cls(value)


@strawberry.enum(description="Whether a customer record is live or merged into another.")
class CustomerStatus(Stored):
    ACTIVE = "ACTIVE"
    MERGED = "MERGED"


@strawberry.enum(description="What an address is used for.")
class AddressKind(Stored):
    HOME = "HOME"
    BILLING = "BILLING"
    SHIPPING = "SHIPPING"


@strawberry.enum(description="Where an order is in its life, from placed to delivered.")
class OrderStatus(Stored):
    PLACED = "PLACED"
    PAID = "PAID"
    FULFILLING = "FULFILLING"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    RETURNED = "RETURNED"


@strawberry.enum(description="The channel through which something happened.")
class Channel(Stored):
    WEB = "WEB"
    MOBILE = "MOBILE"
    STORE = "STORE"
    CONTACT_CENTER = "CONTACT_CENTER"
    EMAIL = "EMAIL"
    SMS = "SMS"
    PHONE = "PHONE"
    PUSH = "PUSH"
    POST = "POST"
    FIELD_SERVICE = "FIELD_SERVICE"


@strawberry.enum(description="What kind of interaction a timeline entry records.")
class InteractionType(Stored):
    PAGE_VIEW = "PAGE_VIEW"
    PRODUCT_VIEW = "PRODUCT_VIEW"
    CART_UPDATED = "CART_UPDATED"
    CART_ABANDONED = "CART_ABANDONED"
    ORDER_PLACED = "ORDER_PLACED"
    CALL = "CALL"
    CHAT = "CHAT"
    EMAIL = "EMAIL"
    STORE_VISIT = "STORE_VISIT"
    APP_OPEN = "APP_OPEN"


@strawberry.enum(description="Where a support ticket is in its handling.")
class TicketStatus(Stored):
    OPEN = "OPEN"
    PENDING = "PENDING"
    RESOLVED = "RESOLVED"


@strawberry.enum(description="How urgent a ticket is.")
class TicketPriority(Stored):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    URGENT = "URGENT"


@strawberry.enum(description="A kind of identifier that names the customer in another system.")
class IdentityType(Stored):
    WEB_ANONYMOUS_ID = "WEB_ANONYMOUS_ID"
    DEVICE_ID = "DEVICE_ID"
    LOYALTY_NUMBER = "LOYALTY_NUMBER"
    CRM_ID = "CRM_ID"


@strawberry.enum(description="A loyalty program tier, lowest first.")
class LoyaltyTier(Stored):
    BRONZE = "BRONZE"
    SILVER = "SILVER"
    GOLD = "GOLD"
    PLATINUM = "PLATINUM"


@strawberry.enum(description="Where a shipment is, as the carrier reports it.")
class ShipmentStatus(Stored):
    LABEL_CREATED = "LABEL_CREATED"
    IN_TRANSIT = "IN_TRANSIT"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    DELIVERED = "DELIVERED"
    EXCEPTION = "EXCEPTION"
