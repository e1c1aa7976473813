"""Per-request loaders over the vendor APIs: one batch request per tick."""

from __future__ import annotations

from functools import cached_property

from sources.cache.entity import EntityCache
from sources.dataloader import DataLoader
from sources.loader import keyed_loader
from sources.roundtrips import LOYALTY, TRACKING
from sources.thirdparty import client as vendor
from sources.thirdparty.records import LoyaltyRecord, ShipmentRecord

# Loader names: they appear in cache keys, and invalidations name them.
MEMBER, SHIPMENT = "member", "shipment"


class VendorLoaders:
    """The vendor API loaders of one request, each made on first use."""

    def __init__(
        self,
        loyalty: vendor.VendorClient,
        tracking: vendor.VendorClient,
        *,
        loyalty_timeout: float,
        tracking_timeout: float,
        cache: EntityCache | None,
    ) -> None:
        self._cache = cache
        self._loyalty = loyalty
        self._tracking = tracking
        self._loyalty_timeout = loyalty_timeout
        self._tracking_timeout = tracking_timeout

    @cached_property
    def loyalty_by_customer_id(self) -> DataLoader[int, LoyaltyRecord | None]:
        client = self._loyalty
        return keyed_loader(
            LOYALTY,
            self._loyalty_timeout,
            lambda k: vendor.loyalty_by_customer_ids(client=client, ids=k),
            cache=self._cache,
            name=MEMBER,
        )

    @cached_property
    def shipment_by_tracking_number(self) -> DataLoader[str, ShipmentRecord | None]:
        client = self._tracking
        return keyed_loader(
            TRACKING,
            self._tracking_timeout,
            lambda k: vendor.shipments_by_tracking_numbers(client=client, numbers=k),
            cache=self._cache,
            name=SHIPMENT,
        )
