"""Generate a deterministic customer base: the same seed and size give the same data.

Rows come out as plain dicts ready for a bulk insert into SQL, MongoDB and the vendor
simulator, one chunk of customers at a time so memory stays flat at any scale.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

Row = dict[str, Any]

FIRST_NAMES = (
    "Ada Alan Amira Anna Ben Carla Chen Dara Eli Emma Farah Felix Grace Hana Ivan Jade Jonas "
    "Kai Lara Leo Lina Marco Maya Nia Noah Omar Paula Quinn Rosa Sam Sara Theo Uma Vera Wei "
    "Yara Zoe"
).split()
LAST_NAMES = (
    "Adams Bauer Costa Dubois Evans Fischer Garcia Hansen Ito Jensen Kowalski Larsen Martin "
    "Novak Okafor Petrov Quinn Rossi Santos Tanaka Umar Varga Weber Xu Young Zimmermann"
).split()
CITIES = (
    ("London", "England", "GB", "EC1A"),
    ("Manchester", "England", "GB", "M1"),
    ("Berlin", "Berlin", "DE", "10115"),
    ("Hamburg", "Hamburg", "DE", "20095"),
    ("Paris", "Ile-de-France", "FR", "75001"),
    ("Lyon", "Auvergne-Rhone-Alpes", "FR", "69001"),
    ("Madrid", "Madrid", "ES", "28001"),
    ("Amsterdam", "North Holland", "NL", "1011"),
    ("Dublin", "Leinster", "IE", "D01"),
    ("Milan", "Lombardy", "IT", "20121"),
)
STREETS = "High Street|Station Road|Church Lane|Mill Road|Park Avenue|Market Square".split("|")
CATEGORIES = ("shoes", "outerwear", "knitwear", "accessories", "bags", "home", "sport")
ADJECTIVES = "Classic Urban Alpine Coastal Everyday Trail Studio Heritage Light Merino".split()
NOUNS = "Sneaker Boot Parka Jacket Sweater Scarf Beanie Tote Backpack Throw Legging Cap".split()
ORDER_STATUSES = (
    ("DELIVERED", 55),
    ("SHIPPED", 10),
    ("FULFILLING", 5),
    ("PAID", 5),
    ("PLACED", 5),
    ("CANCELLED", 10),
    ("RETURNED", 10),
)
ORDER_CHANNELS = (("WEB", 50), ("MOBILE", 30), ("STORE", 15), ("CONTACT_CENTER", 5))
INTERACTIONS = (
    ("PAGE_VIEW", "WEB", 40),
    ("PRODUCT_VIEW", "MOBILE", 20),
    ("CART_UPDATED", "WEB", 10),
    ("CART_ABANDONED", "WEB", 5),
    ("APP_OPEN", "MOBILE", 10),
    ("EMAIL", "EMAIL", 6),
    ("CALL", "CONTACT_CENTER", 3),
    ("CHAT", "WEB", 3),
    ("STORE_VISIT", "STORE", 3),
)
SEGMENTS = (
    "high-value",
    "frequent-buyer",
    "lapsed",
    "newsletter",
    "outdoor",
    "sale-hunter",
    "new-customer",
    "vip-service",
)
CONSENT_CHANNELS = ("EMAIL", "SMS", "PHONE", "PUSH", "POST")
TIERS = (("BRONZE", 50), ("SILVER", 30), ("GOLD", 15), ("PLATINUM", 5))
CARRIERS = ("UPS", "DHL", "DPD")
TICKET_SUBJECTS = (
    "Where is my parcel?",
    "Wrong size delivered",
    "Refund not received",
    "Change address",
    "Damaged item",
    "Technician visit",
    "Loyalty points missing",
)


def _weighted(rng: random.Random, options: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    return rng.choices(options, weights=[o[-1] for o in options])[0]


@dataclass
class Chunk:
    """The rows of one chunk of customers, per target table or collection."""

    customers: list[Row] = field(default_factory=list)
    addresses: list[Row] = field(default_factory=list)
    orders: list[Row] = field(default_factory=list)
    order_lines: list[Row] = field(default_factory=list)
    profiles: list[Row] = field(default_factory=list)
    interactions: list[Row] = field(default_factory=list)
    tickets: list[Row] = field(default_factory=list)
    members: list[Row] = field(default_factory=list)
    shipments: list[Row] = field(default_factory=list)


class Generator:
    """A seeded source of customers and everything hung on them.

    Averages per customer: about 10 orders of 1-4 lines, 50 interactions, 1 ticket.
    """

    PRODUCTS = 500

    def __init__(self, seed: int = 360, anchor: dt.datetime | None = None) -> None:
        self.rng = random.Random(seed)
        self.anchor = anchor or dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        self._next_order = 1
        self._next_ticket = 1
        self._next_object = 0
        self.products = self._products()

    def _products(self) -> list[Row]:
        rng = self.rng
        rows = []
        for n in range(1, self.PRODUCTS + 1):
            rows.append(
                {
                    "sku": f"SKU-{n:05d}",
                    "name": f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {n}",
                    "category": rng.choice(CATEGORIES),
                    "price_minor": rng.randrange(500, 40000, 100) - 1,
                    "currency": "EUR",
                    "stock": rng.randint(0, 500),
                }
            )
        return rows

    def _object_id(self, at: dt.datetime) -> ObjectId:
        # Deterministic ObjectIds: the timestamp part plus a running counter.
        self._next_object += 1
        return ObjectId(f"{int(at.timestamp()):08x}{self._next_object:016x}")

    def _before_anchor(self, earliest: dt.datetime) -> dt.datetime:
        span = max(int((self.anchor - earliest).total_seconds()), 1)
        return earliest + dt.timedelta(seconds=self.rng.randrange(span))

    def chunk(self, first_id: int, count: int) -> Chunk:
        """Customers `first_id` .. `first_id + count - 1` with all their data."""
        out = Chunk()
        for customer_id in range(first_id, first_id + count):
            self._customer(customer_id, out)
        return out

    def _customer(self, cid: int, out: Chunk) -> None:
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        created = self.anchor - dt.timedelta(days=rng.randint(30, 3 * 365))
        out.customers.append(
            {
                "id": cid,
                "first_name": first,
                "last_name": last,
                "email": f"{first}.{last}.{cid}@example.com".lower(),
                "phone": f"+4477{cid:08d}",
                "birth_date": dt.date(
                    rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28)
                ),
                "status": "ACTIVE",
                "merged_into": None,
                "created_at": created,
                "updated_at": created,
            }
        )
        city, region, country, postal = rng.choice(CITIES)
        for kind in rng.sample(("HOME", "BILLING", "SHIPPING"), rng.randint(1, 3)):
            out.addresses.append(
                {
                    "customer_id": cid,
                    "kind": kind,
                    "line1": f"{rng.randint(1, 200)} {rng.choice(STREETS)}",
                    "line2": None if rng.random() < 0.7 else f"Flat {rng.randint(1, 40)}",
                    "city": city,
                    "region": region,
                    "postal_code": postal,
                    "country": country,
                    "updated_at": created,
                }
            )
        lifetime = self._orders(cid, created, out)
        member = rng.random() < 0.6
        if member:
            out.members.append(
                {
                    "customerId": str(cid),
                    "memberNumber": f"LOY{cid:08d}",
                    "tier": _weighted(rng, TIERS)[0],
                    "points": rng.randint(0, 20000),
                    "enrolledAt": self._before_anchor(created).isoformat(),
                }
            )
        last_seen = self._interactions(cid, created, out)
        if rng.random() < 0.95:
            out.profiles.append(self._profile(cid, created, member, lifetime, last_seen))
        self._tickets(cid, created, out)

    def _orders(self, cid: int, created: dt.datetime, out: Chunk) -> int:
        rng = self.rng
        lifetime = 0
        for _ in range(rng.choice((0, 2, 5, 8, 10, 10, 12, 15, 18, 20))):
            oid = self._next_order
            self._next_order += 1
            placed = self._before_anchor(created)
            status = _weighted(rng, ORDER_STATUSES)[0]
            total = 0
            for line_number in range(1, rng.randint(1, 4) + 1):
                product = rng.choice(self.products)
                quantity = rng.randint(1, 3)
                total += quantity * product["price_minor"]
                out.order_lines.append(
                    {
                        "order_id": oid,
                        "line_number": line_number,
                        "sku": product["sku"],
                        "quantity": quantity,
                        "unit_price_minor": product["price_minor"],
                    }
                )
            tracking = None
            if status in ("SHIPPED", "DELIVERED", "RETURNED"):
                tracking = f"1Z{oid:012d}"
                out.shipments.append(self._shipment(tracking, placed, status))
            if status not in ("CANCELLED", "RETURNED"):
                lifetime += total
            out.orders.append(
                {
                    "id": oid,
                    "customer_id": cid,
                    "number": f"ORD-{oid:08d}",
                    "status": status,
                    "channel": _weighted(rng, ORDER_CHANNELS)[0],
                    "total_minor": total,
                    "currency": "EUR",
                    "tracking_number": tracking,
                    "placed_at": placed,
                    "updated_at": placed + dt.timedelta(hours=rng.randint(0, 96)),
                }
            )
        return lifetime

    def _shipment(self, tracking: str, placed: dt.datetime, status: str) -> Row:
        rng = self.rng
        delivered = status != "SHIPPED"
        shipment_status = (
            "DELIVERED" if delivered else rng.choice(("IN_TRANSIT", "OUT_FOR_DELIVERY"))
        )
        events = []
        at = placed + dt.timedelta(hours=rng.randint(6, 48))
        for description in ("Label created", "Picked up", "In transit", "Delivered")[
            : 4 if delivered else rng.randint(2, 3)
        ]:
            events.append(
                {
                    "at": at.isoformat(),
                    "location": rng.choice(CITIES)[0],
                    "description": description,
                }
            )
            at += dt.timedelta(hours=rng.randint(4, 30))
        return {
            "trackingNumber": tracking,
            "carrier": rng.choice(CARRIERS),
            "status": shipment_status,
            "eta": None if delivered else at.isoformat(),
            "events": events,
        }

    def _interactions(self, cid: int, created: dt.datetime, out: Chunk) -> dt.datetime | None:
        rng = self.rng
        last_seen: dt.datetime | None = None
        for _ in range(rng.randint(20, 80)):
            kind, channel, _weight = _weighted(rng, INTERACTIONS)
            at = self._before_anchor(created).replace(microsecond=0)
            last_seen = at if last_seen is None or at > last_seen else last_seen
            out.interactions.append(
                {
                    "_id": self._object_id(at),
                    "customer_id": cid,
                    "type": kind,
                    "channel": channel,
                    "occurred_at": at,
                    "attributes": {"path": f"/p/SKU-{rng.randint(1, self.PRODUCTS):05d}"}
                    if kind in ("PAGE_VIEW", "PRODUCT_VIEW")
                    else {},
                }
            )
        return last_seen

    def _profile(
        self,
        cid: int,
        created: dt.datetime,
        member: bool,
        lifetime: int,
        last_seen: dt.datetime | None,
    ) -> Row:
        rng = self.rng
        identities = [{"type": "CRM_ID", "value": f"CRM-{cid:07d}"}]
        identities += [
            {"type": "WEB_ANONYMOUS_ID", "value": f"anon-{cid:07d}-{n}"}
            for n in range(rng.randint(0, 2))
        ]
        if rng.random() < 0.5:
            identities.append({"type": "DEVICE_ID", "value": f"dev-{cid:07d}"})
        if member:
            identities.append({"type": "LOYALTY_NUMBER", "value": f"LOY{cid:08d}"})
        return {
            "_id": cid,
            "traits": {
                "favouriteCategory": rng.choice(CATEGORIES),
                "shoeSize": str(rng.randint(36, 46)),
            },
            "segments": sorted(rng.sample(SEGMENTS, rng.randint(0, 3))),
            "preferences": {
                "channels": rng.sample(("EMAIL", "SMS", "PUSH"), rng.randint(1, 3)),
                "language": rng.choice(("en", "de", "fr", "es", "it", "nl")),
            },
            "consents": [
                {
                    "channel": channel,
                    "granted": rng.random() < 0.6,
                    "updated_at": self._before_anchor(created).replace(microsecond=0),
                }
                for channel in CONSENT_CHANNELS
            ],
            "identities": identities,
            "computed": {
                "lifetime_value_minor": lifetime,
                "currency": "EUR",
                "last_seen_at": last_seen,
            },
        }

    def _tickets(self, cid: int, created: dt.datetime, out: Chunk) -> None:
        rng = self.rng
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            opened = self._before_anchor(created).replace(microsecond=0)
            status = rng.choice(("OPEN", "PENDING", "RESOLVED", "RESOLVED"))
            history = [{"at": opened, "status": "OPEN", "note": "Ticket opened"}]
            if status != "OPEN":
                history.append(
                    {"at": opened + dt.timedelta(hours=2), "status": status, "note": None}
                )
            out.tickets.append(
                {
                    "_id": f"T-{self._next_ticket:07d}",
                    "customer_id": cid,
                    "subject": rng.choice(TICKET_SUBJECTS),
                    "status": status,
                    "priority": rng.choice(("LOW", "NORMAL", "NORMAL", "HIGH", "URGENT")),
                    "channel": rng.choice(("PHONE", "EMAIL", "WEB", "FIELD_SERVICE")),
                    "assignee": None if status == "OPEN" else f"agent-{rng.randint(1, 40)}",
                    "eta": opened + dt.timedelta(days=rng.randint(1, 5))
                    if status != "RESOLVED"
                    else None,
                    "created_at": opened,
                    "updated_at": history[-1]["at"],
                    "history": history,
                }
            )
            self._next_ticket += 1
