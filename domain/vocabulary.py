"""The words c360's data is written in: every enumerated value, declared once, in order.

The stores keep these strings; the graph's enumerations (`resolvers.enums`), the upstream
events' JSON Schemas (`sources/events/schemas`) and the write model's checks all use them.
tests/domain/test_vocabulary.py holds each of those to the lists here, so a value added in one
place and not the others fails the tests instead of a request.
"""

from __future__ import annotations

CUSTOMER_STATUSES = ("ACTIVE", "MERGED")
ADDRESS_KINDS = ("HOME", "BILLING", "SHIPPING")
ORDER_STATUSES = (
    "PLACED",
    "PAID",
    "FULFILLING",
    "SHIPPED",
    "DELIVERED",
    "CANCELLED",
    "RETURNED",
)
# Where an order may go from each status.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "PLACED": frozenset({"PAID", "CANCELLED"}),
    "PAID": frozenset({"FULFILLING", "CANCELLED"}),
    "FULFILLING": frozenset({"SHIPPED", "CANCELLED"}),
    "SHIPPED": frozenset({"DELIVERED", "RETURNED"}),
    "DELIVERED": frozenset({"RETURNED"}),
    "CANCELLED": frozenset(),
    "RETURNED": frozenset(),
}
CHANNELS = (
    "WEB",
    "MOBILE",
    "STORE",
    "CONTACT_CENTER",
    "EMAIL",
    "SMS",
    "PHONE",
    "PUSH",
    "POST",
    "FIELD_SERVICE",
)
# The channels a customer gives or withdraws consent for: those that reach them.
CONSENT_CHANNELS = ("EMAIL", "SMS", "PHONE", "PUSH", "POST")
INTERACTION_TYPES = (
    "PAGE_VIEW",
    "PRODUCT_VIEW",
    "CART_UPDATED",
    "CART_ABANDONED",
    "ORDER_PLACED",
    "CALL",
    "CHAT",
    "EMAIL",
    "STORE_VISIT",
    "APP_OPEN",
)
TICKET_STATUSES = ("OPEN", "PENDING", "RESOLVED")
TICKET_PRIORITIES = ("LOW", "NORMAL", "HIGH", "URGENT")
IDENTITY_TYPES = ("WEB_ANONYMOUS_ID", "DEVICE_ID", "LOYALTY_NUMBER", "CRM_ID")
# Lowest first.
LOYALTY_TIERS = ("BRONZE", "SILVER", "GOLD", "PLATINUM")
SHIPMENT_STATUSES = ("LABEL_CREATED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED", "EXCEPTION")
