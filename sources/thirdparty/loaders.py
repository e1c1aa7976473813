"""Per-request loaders over the vendor APIs: one batch request per tick."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from aiodataloader import DataLoader

from sources.loader import keyed_loader
from sources.roundtrips import LOYALTY, TRACKING
from sources.thirdparty import client as vendor
from sources.thirdparty.records import LoyaltyRecord, ShipmentRecord


@dataclass(frozen=True, slots=True)
class VendorLoaders:
    loyalty_by_customer_id: DataLoader[int, LoyaltyRecord | None]
    shipment_by_tracking_number: DataLoader[str, ShipmentRecord | None]


def create_vendor_loaders(
    loyalty: httpx.AsyncClient,
    tracking: httpx.AsyncClient,
    *,
    loyalty_timeout: float,
    tracking_timeout: float,
) -> VendorLoaders:
    """Fresh loaders for one request (or one WebSocket operation)."""
    return VendorLoaders(
        loyalty_by_customer_id=keyed_loader(
            LOYALTY,
            loyalty_timeout,
            lambda k: vendor.loyalty_by_customer_ids(client=loyalty, ids=k),
        ),
        shipment_by_tracking_number=keyed_loader(
            TRACKING,
            tracking_timeout,
            lambda k: vendor.shipments_by_tracking_numbers(client=tracking, numbers=k),
        ),
    )
