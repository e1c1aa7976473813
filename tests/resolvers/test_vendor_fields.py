"""Vendor data made into graph objects only where a document asks for it."""

from __future__ import annotations

import httpx

from api.connections import Connections
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer
from tests.queries import graphql

SCANS = [
    {"at": "2026-11-20T08:00:00+00:00", "location": "Leipzig hub", "description": "Sorted"},
    {"at": "2026-11-21T09:30:00+00:00", "location": "Berlin depot", "description": "Out"},
]


async def test_a_shipment_answers_its_scan_history_when_asked(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store, orders=1)
    tracking = f"TRK{cid}0000"
    [shipment] = vendor_store.get("shipments", [tracking])
    vendor_store.put("shipments", [(tracking, shipment | {"events": SCANS})])
    query = f"""{{ customer(id: "{cid}") {{ orders(first: 1) {{ edges {{ node {{
        shipment {{ trackingNumber status events {{ at location description }} }}
        quiet: shipment {{ status }} }} }} }} }} }}"""
    body = await graphql(client, query)
    assert "errors" not in body, body
    [edge] = body["data"]["customer"]["orders"]["edges"]
    assert edge["node"]["shipment"] == {
        "trackingNumber": tracking,
        "status": "IN_TRANSIT",
        "events": SCANS,
    }
    assert edge["node"]["quiet"] == {"status": "IN_TRANSIT"}
