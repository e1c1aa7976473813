"""Plain, immutable records the vendor APIs hand to the graph."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LoyaltyRecord:
    customer_id: int
    member_number: str
    tier: str
    points: int
    enrolled_at: dt.datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoyaltyRecord:
        return cls(
            customer_id=int(data["customerId"]),
            member_number=data["memberNumber"],
            tier=data["tier"],
            points=int(data["points"]),
            enrolled_at=dt.datetime.fromisoformat(data["enrolledAt"]),
        )


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
