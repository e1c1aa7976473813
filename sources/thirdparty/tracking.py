"""The carrier tracking API: its declaration, its records and its one batch call."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sources.declaration import VendorAPI

if TYPE_CHECKING:
    from sources.thirdparty.client import VendorClient


@dataclass(frozen=True, slots=True)
class ScanRecord:
    at: dt.datetime
    location: str
    description: str


@dataclass(frozen=True, slots=True)
class ShipmentRecord:
    tracking_number: str
    carrier: str
    status: str
    eta: dt.datetime | None
    events: list[ScanRecord]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShipmentRecord:
        eta = data.get("eta")
        return cls(
            tracking_number=data["trackingNumber"],
            carrier=data["carrier"],
            status=data["status"],
            eta=dt.datetime.fromisoformat(eta) if eta else None,
            events=[
                ScanRecord(dt.datetime.fromisoformat(e["at"]), e["location"], e["description"])
                for e in data.get("events", [])
            ],
        )


TRACKING = VendorAPI(
    name="tracking",
    title="the carrier tracking API",
    records=(ShipmentRecord, ScanRecord),
    ttl=60.0,
    timeout=1.0,
)

SHIPMENTS_BATCH = "/tracking/v1/shipments:batchGet"


async def shipments_by_tracking_numbers(
    client: VendorClient, numbers: Sequence[str]
) -> list[ShipmentRecord | None]:
    """Shipments in key order, None for a tracking number the carrier does not know."""
    shipments = await client.post(
        SHIPMENTS_BATCH,
        {"trackingNumbers": list(set(numbers))},
        lambda answer: [ShipmentRecord.from_json(shipment) for shipment in answer["shipments"]],
    )
    found = {record.tracking_number: record for record in shipments}
    return [found.get(n) for n in numbers]
