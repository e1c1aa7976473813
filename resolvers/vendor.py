"""Types backed by the third-party APIs: loyalty membership and carrier shipments."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import strawberry

from resolvers.access import Pii
from resolvers.enums import LoyaltyTier, ShipmentStatus
from resolvers.masking import mask_identifier
from sources.thirdparty.loyalty import LoyaltyRecord
from sources.thirdparty.tracking import ScanRecord, ShipmentRecord


@strawberry.type(description="The customer's membership of the loyalty program (loyalty API).")
class LoyaltyMembership:
    customer_id: strawberry.Private[int]
    member_number: str | None = strawberry.field(
        description="The member number printed on the card (personal data: it is also an "
        "identity, so it is masked for analysts like identity values).",
        extensions=[Pii(mask_identifier)],
    )
    tier: LoyaltyTier = strawberry.field(description="Current tier.")
    points: int = strawberry.field(description="Points balance available to spend.")
    enrolled_at: dt.datetime = strawberry.field(description="When the customer joined.")

    @classmethod
    def from_record(cls, record: LoyaltyRecord) -> LoyaltyMembership:
        return cls(
            customer_id=record.customer_id,
            member_number=record.member_number,
            tier=LoyaltyTier.of(record.tier),
            points=record.points,
            enrolled_at=record.enrolled_at,
        )


@strawberry.type(description="One scan of a parcel by the carrier.")
class ScanEvent:
    at: dt.datetime = strawberry.field(description="When the scan happened.")
    location: str = strawberry.field(description="Where the parcel was scanned.")
    description: str = strawberry.field(description="What the carrier says happened.")


@strawberry.type(description="A parcel as the carrier tracks it (carrier tracking API).")
class Shipment:
    tracking_number: str = strawberry.field(description="The carrier's tracking number.")
    carrier: str = strawberry.field(description="The carrier's name.")
    status: ShipmentStatus = strawberry.field(description="Latest status from the carrier.")
    eta: dt.datetime | None = strawberry.field(
        description="Estimated delivery time; null once delivered or when unknown."
    )
    # Made into ScanEvents only when asked for: the agent's screen shows status and eta.
    scans: strawberry.Private[Sequence[ScanRecord]]

    @strawberry.field(description="Scan history, oldest first.")
    def events(self) -> list[ScanEvent]:
        return [
            ScanEvent(at=e.at, location=e.location, description=e.description) for e in self.scans
        ]

    @classmethod
    def from_record(cls, record: ShipmentRecord) -> Shipment:
        return cls(
            tracking_number=record.tracking_number,
            carrier=record.carrier,
            status=ShipmentStatus.of(record.status),
            eta=record.eta,
            scans=record.events,
        )
