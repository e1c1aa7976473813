"""Money amounts: one conversion each way between decimal strings and the currency's minor
units (EUR 2 decimals, JPY 0, BHD 3), exact both ways."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.connections import Connections
from resolvers.common import Money
from sources import money
from sources.thirdparty.simulator import VendorStore
from tests.auth import PUBLISHER
from tests.builders import build_customer
from tests.http.test_events_applied import BATCH, cloud_event, view

CURRENCIES = ["EUR", "JPY", "BHD"]


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.sampled_from(CURRENCIES))
def test_minor_units_and_their_decimal_string_are_one_amount(minor: int, currency: str) -> None:
    # Minor units are 64-bit in the stores; Decimal's own 28 digits would round beyond that.
    text = money.to_decimal(minor, currency)
    assert text == str(Decimal(minor).scaleb(-money.exponent(currency)))
    assert money.to_minor(text, currency) == minor


def test_each_currency_has_its_minor_unit() -> None:
    assert Money.from_minor(1999, "EUR").amount == "19.99"
    assert Money.from_minor(-5, "USD").amount == "-0.05"
    assert Money.from_minor(1999, "JPY").amount == "1999"
    assert Money.from_minor(1999, "BHD").amount == "1.999"
    assert money.to_minor("129.9", "EUR") == 12990
    assert money.to_minor("1500", "JPY") == 1500
    assert money.to_minor("12.345", "BHD") == 12345


@pytest.mark.parametrize(
    ("amount", "currency"), [("1500.5", "JPY"), ("19.999", "EUR"), ("1.2345", "BHD"), ("x", "EUR")]
)
def test_an_amount_finer_than_its_currency_is_refused_not_rounded(
    amount: str, currency: str
) -> None:
    with pytest.raises(money.AmountError):
        money.to_minor(amount, currency)


async def test_an_order_placed_upstream_keeps_its_currencys_amounts(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")

    def order(n: int, currency: str, total: str, unit_price: str) -> dict[str, object]:
        order_id = str(cid * 1000 + 700 + n)
        return cloud_event(
            "order.placed",
            cid,
            {
                "order_id": order_id,
                "number": f"FX-{order_id}",
                "channel": "WEB",
                "currency": currency,
                "total": total,
                "placed_at": now,
                "lines": [{"sku": "SKU-00001", "quantity": 1, "unit_price": unit_price}],
            },
        )

    events = [
        order(1, "JPY", "1500", "1500"),
        order(2, "BHD", "12.345", "12.345"),
        order(3, "EUR", "129.9", "129.9"),
        order(4, "JPY", "1500.5", "1500.5"),  # no yen has a decimal
    ]
    answer = await client.post("/events", json=events, headers=PUBLISHER | {"content-type": BATCH})
    assert answer.status_code == 400, answer.text
    statuses = [r["status"] for r in answer.json()["results"]]
    assert statuses == ["accepted", "accepted", "accepted", "rejected"]
    assert "JPY" in answer.json()["results"][3]["reasons"][0]
    customer = await view(
        client,
        cid,
        "orders(first: 10) { edges { node { number total { amount currency } "
        "lines { unitPrice { amount } } } } }",
    )
    shown = {
        e["node"]["number"]: (e["node"]["total"], e["node"]["lines"][0]["unitPrice"]["amount"])
        for e in customer["orders"]["edges"]
        if e["node"]["number"].startswith("FX-")
    }
    assert sorted(shown.values(), key=str) == sorted(
        [
            ({"amount": "1500", "currency": "JPY"}, "1500"),
            ({"amount": "12.345", "currency": "BHD"}, "12.345"),
            ({"amount": "129.90", "currency": "EUR"}, "129.90"),
        ],
        key=str,
    )
