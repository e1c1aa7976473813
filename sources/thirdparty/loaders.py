"""Per-request loaders over the vendor APIs: one batch request per tick."""

from __future__ import annotations

from collections.abc import Mapping

from sources.cache.entity import EntityCache
from sources.dataloader import DataLoader, loader_property
from sources.loader import keyed_loader
from sources.thirdparty import loyalty, tracking
from sources.thirdparty.client import VendorClient
from sources.thirdparty.loyalty import LoyaltyRecord
from sources.thirdparty.tracking import ShipmentRecord

# Loader names: they appear in cache keys, and invalidations name them.
MEMBER, SHIPMENT = "member", "shipment"


class VendorLoaders:
    """The vendor API loaders of one request, each made on first use.

    `clients` holds every declared vendor's client by the vendor's name
    (`sources.catalog.VENDORS`); each call is bounded by its client's timeout.
    """

    def __init__(self, clients: Mapping[str, VendorClient], cache: EntityCache | None) -> None:
        self._clients = clients
        self._cache = cache

    @loader_property
    def loyalty_by_customer_id(self) -> DataLoader[int, LoyaltyRecord | None]:
        client = self._clients[loyalty.LOYALTY.name]
        return keyed_loader(
            loyalty.LOYALTY.name,
            client.timeout,
            lambda ids: loyalty.members_by_customer_ids(client, ids),
            cache=self._cache,
            name=MEMBER,
        )

    @loader_property
    def shipment_by_tracking_number(self) -> DataLoader[str, ShipmentRecord | None]:
        client = self._clients[tracking.TRACKING.name]
        return keyed_loader(
            tracking.TRACKING.name,
            client.timeout,
            lambda numbers: tracking.shipments_by_tracking_numbers(client, numbers),
            cache=self._cache,
            name=SHIPMENT,
        )
