"""HTTP clients of the vendor APIs: one batch endpoint each, round trips counted per vendor."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from sources.roundtrips import LOYALTY, TRACKING, RoundTrips
from sources.thirdparty.records import LoyaltyRecord, ShipmentRecord

LOYALTY_BATCH = "/loyalty/v1/members:batchGet"
TRACKING_BATCH = "/tracking/v1/shipments:batchGet"


def create_client(
    base_url: str, *, vendor: str, timeout: float, round_trips: RoundTrips | None = None
) -> httpx.AsyncClient:
    """A pooled client for one vendor, counting each request it sends."""

    async def count(_request: httpx.Request) -> None:
        if round_trips is not None:
            round_trips.record(vendor)

    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        event_hooks={"request": [count]},
        headers={"user-agent": "c360"},
    )


async def loyalty_by_customer_ids(
    *, client: httpx.AsyncClient, ids: Sequence[int]
) -> list[LoyaltyRecord | None]:
    """Loyalty memberships in key order, None for a customer who is not a member."""
    response = await client.post(LOYALTY_BATCH, json={"customerIds": [str(i) for i in set(ids)]})
    response.raise_for_status()
    found = {
        record.customer_id: record
        for record in map(LoyaltyRecord.from_json, response.json()["members"])
    }
    return [found.get(i) for i in ids]


async def shipments_by_tracking_numbers(
    *, client: httpx.AsyncClient, numbers: Sequence[str]
) -> list[ShipmentRecord | None]:
    """Shipments in key order, None for a tracking number the carrier does not know."""
    response = await client.post(TRACKING_BATCH, json={"trackingNumbers": list(set(numbers))})
    response.raise_for_status()
    found = {
        record.tracking_number: record
        for record in map(ShipmentRecord.from_json, response.json()["shipments"])
    }
    return [found.get(n) for n in numbers]


__all__ = [
    "LOYALTY",
    "TRACKING",
    "create_client",
    "loyalty_by_customer_ids",
    "shipments_by_tracking_numbers",
]
