"""A failing source nulls only its own fields, with one coded error per failed path."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.connections import Connections
from api.settings import Settings
from sources.net import free_port
from sources.thirdparty.simulator import VendorStore
from tests.builders import T0, build_customer
from tests.conftest import Simulator, running_app
from tests.queries import agent_view, graphql


def assert_no_internals(body: dict[str, Any]) -> None:
    text = str(body)
    for leak in ("Traceback", 'File "', "127.0.0.1", "Error(", "pymongo", "httpx"):
        assert leak not in text, f"{leak!r} leaked into {text[:300]}"


async def test_carrier_api_down_nulls_only_shipments(
    client: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
    vendor_faults: Simulator,
) -> None:
    cid = await build_customer(connections, vendor_store, orders=3)
    vendor_faults.set_faults("tracking", failure_rate=1.0)

    body = await agent_view(client, cid)

    customer = body["data"]["customer"]
    edges = customer["orders"]["edges"]
    assert [e["node"]["shipment"] for e in edges] == [None, None, None]
    assert customer["loyalty"] == {"tier": "GOLD", "points": 100}
    assert customer["profile"] and customer["timeline"] and customer["addresses"]
    assert all(e["node"]["lines"] for e in edges)
    assert sorted(e["path"][3] for e in body["errors"]) == [0, 1, 2]
    for error in body["errors"]:
        assert error["path"][-1] == "shipment"
        assert error["extensions"] == {"code": "SOURCE_UNAVAILABLE", "source": "tracking"}
        assert error["message"] == "tracking is unavailable"
    assert_no_internals(body)


async def test_carrier_api_too_slow_times_out_per_source(
    client: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
    vendor_faults: Simulator,
    settings: Settings,
) -> None:
    cid = await build_customer(connections, vendor_store, orders=2)
    vendor_faults.set_faults(
        "tracking", latency_ms=settings.source_timeout("tracking") * 1000 + 1500
    )

    body = await agent_view(client, cid)

    assert [e["node"]["shipment"] for e in body["data"]["customer"]["orders"]["edges"]] == [
        None,
        None,
    ]
    assert len(body["errors"]) == 2
    assert {e["extensions"]["code"] for e in body["errors"]} == {"SOURCE_TIMEOUT"}
    assert body["data"]["customer"]["loyalty"] is not None
    assert_no_internals(body)


async def test_loyalty_api_down_nulls_only_loyalty(
    client: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
    vendor_faults: Simulator,
) -> None:
    cid = await build_customer(connections, vendor_store, orders=1)
    vendor_faults.set_faults("loyalty", failure_rate=1.0)

    body = await agent_view(client, cid)

    assert body["data"]["customer"]["loyalty"] is None
    assert body["data"]["customer"]["orders"]["edges"][0]["node"]["shipment"] is not None
    [error] = body["errors"]
    assert error["path"] == ["customer", "loyalty"]
    assert error["extensions"]["code"] == "SOURCE_UNAVAILABLE"


async def test_mongodb_unreachable_nulls_engagement_fields(settings: Settings) -> None:
    nowhere = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    # Server selection gives up at half the call's timeout: 1 s of margin for a busy test
    # process (at 0.6 s, a 0.3 s stall let the call's own timeout answer first).
    async with running_app(
        settings.with_sources(mongo={"timeout": 2.0}).model_copy(update={"mongo_url": nowhere})
    ) as (_, http):
        body = await agent_view(http, 5)
        ready = await http.get("/readyz")

    customer = body["data"]["customer"]
    assert customer["id"] == "5" and customer["orders"]["totalCount"] >= 0
    assert (
        customer["profile"] is None and customer["timeline"] is None and customer["tickets"] is None
    )
    paths = sorted(tuple(e["path"]) for e in body["errors"])
    assert paths == [("customer", "profile"), ("customer", "tickets"), ("customer", "timeline")]
    assert {e["extensions"]["code"] for e in body["errors"]} == {"SOURCE_UNAVAILABLE"}
    assert_no_internals(body)
    assert ready.status_code == 503
    assert ready.json()["stores"]["mongo"]["status"] == "down"
    assert ready.json()["stores"]["sql"]["status"] == "up"


async def test_unexpected_errors_are_masked_and_logged(
    client: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
    caplog: Any,
) -> None:
    # A profile the code cannot read (an unknown channel) is a bug, not an outage.
    cid = await build_customer(
        connections,
        vendor_store,
        profile={"preferences": {"channels": ["CARRIER_PIGEON"]}},
    )
    body = await agent_view(client, cid)

    [error] = body["errors"]
    assert error["path"] == ["customer", "profile"]
    assert error["message"] == "Unexpected error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert body["data"]["customer"]["profile"] is None
    assert_no_internals(body)
    assert "CARRIER_PIGEON" in caplog.text  # the full error is in the log


@pytest.mark.parametrize(
    "unreadable",
    [
        {"preferences": {"channels": ["CARRIER_PIGEON"]}},
        {"consents": [{"channel": "CARRIER_PIGEON", "granted": True, "updated_at": T0}]},
        {"identities": [{"type": "CARRIER_PIGEON", "value": "x"}]},
    ],
    ids=["preference", "consent", "identity"],
)
async def test_a_profile_with_an_unknown_value_fails_whole_whatever_is_asked(
    client: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
    unreadable: dict[str, Any],
) -> None:
    # A profile converts its fields when they are asked for; a document the graph cannot
    # name a value of is still reported at `profile`, not only when that field is asked.
    cid = await build_customer(connections, vendor_store, profile=unreadable)
    body = await graphql(
        client, "query($id: ID!) { customer(id: $id) { profile { segments } } }", {"id": cid}
    )

    [error] = body["errors"]
    assert error["path"] == ["customer", "profile"]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert body["data"]["customer"]["profile"] is None
