"""Small named builders: one customer with exactly the data a test needs, in every store."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from bson import ObjectId
from sqlalchemy import insert

from api.connections import Connections
from sources.sql import models
from sources.sql.search import Searchable, write_search_terms
from sources.thirdparty.simulator import VendorStore

# Far above the seeded ids, so built customers never collide with the seed dataset.
_ids = itertools.count(1_000_000)
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


async def build_customer(
    connections: Connections,
    vendors: VendorStore,
    *,
    orders: int = 1,
    interactions: int = 5,
    profile: dict[str, Any] | None = None,
    contact: dict[str, Any] | None = None,
) -> int:
    """A customer with `orders` shipped orders (two lines each), a profile, a timeline, an open
    ticket and a loyalty membership; returns the customer id. `contact` overrides columns of
    the customer row (first_name, last_name, email, phone, ...)."""
    cid = next(_ids)
    customer = {
        "id": cid,
        "first_name": "Test",
        "last_name": f"Customer{cid}",
        "email": f"test.{cid}@example.com",
        "phone": f"+4420{cid:08d}",
        "birth_date": None,
        "status": "ACTIVE",
        "merged_into": None,
        "created_at": T0,
        "updated_at": T0,
    } | (contact or {})
    order_rows = [
        {
            "id": cid * 1000 + n,
            "customer_id": cid,
            "number": f"T-{cid}-{n}",
            "status": "SHIPPED",
            "channel": "WEB",
            "total_minor": 2500,
            "currency": "EUR",
            "tracking_number": f"TRK{cid}{n:04d}",
            "placed_at": T0 + dt.timedelta(hours=n),
            "updated_at": T0 + dt.timedelta(hours=n),
        }
        for n in range(orders)
    ]
    async with connections.engine.begin() as sql:
        await sql.execute(insert(models.Customer.__table__), [customer])
        await write_search_terms(connection=sql, customers=[Searchable.of(customer)], replace=False)
        await sql.execute(
            insert(models.Address.__table__),
            [
                {
                    "customer_id": cid,
                    "kind": "HOME",
                    "line1": "1 Test Street",
                    "line2": None,
                    "city": "London",
                    "region": None,
                    "postal_code": "EC1A",
                    "country": "GB",
                    "updated_at": T0,
                }
            ],
        )
        if order_rows:
            await sql.execute(insert(models.Order.__table__), order_rows)
            await sql.execute(
                insert(models.OrderLine.__table__),
                [
                    {
                        "order_id": o["id"],
                        "line_number": line,
                        "sku": f"SKU-0000{line}",
                        "quantity": 1,
                        "unit_price_minor": 1250,
                    }
                    for o in order_rows
                    for line in (1, 2)
                ],
            )
    db = connections.db
    await db.profiles.insert_one(
        (
            profile
            or {
                "_id": cid,
                "traits": {},
                "segments": ["newsletter"],
                "preferences": {"channels": ["EMAIL"], "language": "en"},
                "consents": [{"channel": "EMAIL", "granted": True, "updated_at": T0}],
                "identities": [{"type": "CRM_ID", "value": f"CRM-{cid}"}],
                "computed": {"lifetime_value_minor": 2500 * orders, "currency": "EUR"},
            }
        )
        | {"_id": cid}
    )
    if interactions:
        await db.interactions.insert_many(
            [
                {
                    "_id": ObjectId(),
                    "customer_id": cid,
                    "type": "PAGE_VIEW",
                    "channel": "WEB",
                    "occurred_at": T0 + dt.timedelta(minutes=n),
                    "attributes": {},
                }
                for n in range(interactions)
            ]
        )
    await db.tickets.insert_one(
        {
            "_id": f"TT-{cid}",
            "customer_id": cid,
            "subject": "Where is my parcel?",
            "status": "OPEN",
            "priority": "NORMAL",
            "channel": "PHONE",
            "assignee": None,
            "eta": None,
            "created_at": T0,
            "updated_at": T0,
            "history": [{"at": T0, "status": "OPEN", "note": None}],
        }
    )
    vendors.put(
        "members",
        [
            (
                str(cid),
                {
                    "customerId": str(cid),
                    "memberNumber": f"LOY{cid}",
                    "tier": "GOLD",
                    "points": 100,
                    "enrolledAt": T0.isoformat(),
                },
            )
        ],
    )
    vendors.put(
        "shipments",
        [
            (
                o["tracking_number"],
                {
                    "trackingNumber": o["tracking_number"],
                    "carrier": "DHL",
                    "status": "IN_TRANSIT",
                    "eta": (T0 + dt.timedelta(days=2)).isoformat(),
                    "events": [],
                },
            )
            for o in order_rows
        ],
    )
    return cid
