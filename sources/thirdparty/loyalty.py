"""The loyalty API: its declaration, its records and its one batch call."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sources.declaration import VendorAPI

if TYPE_CHECKING:
    from sources.thirdparty.client import VendorClient


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


LOYALTY = VendorAPI(
    name="loyalty",
    title="the loyalty API",
    records=(LoyaltyRecord,),
    ttl=300.0,
    timeout=1.0,
)

MEMBERS_BATCH = "/loyalty/v1/members:batchGet"


async def members_by_customer_ids(
    client: VendorClient, ids: Sequence[int]
) -> list[LoyaltyRecord | None]:
    """Loyalty memberships in key order, None for a customer who is not a member."""
    members = await client.post(
        MEMBERS_BATCH,
        {"customerIds": [str(i) for i in set(ids)]},
        lambda answer: [LoyaltyRecord.from_json(member) for member in answer["members"]],
    )
    found = {record.customer_id: record for record in members}
    return [found.get(i) for i in ids]
