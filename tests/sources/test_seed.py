"""The synthetic dataset is deterministic and shaped like a real customer base."""

from __future__ import annotations

from sources.seed.generator import Generator


def test_same_seed_same_data() -> None:
    first, second = Generator(seed=7).chunk(1, 20), Generator(seed=7).chunk(1, 20)
    assert first == second
    assert Generator(seed=8).chunk(1, 20) != first


def test_chunks_continue_one_sequence() -> None:
    whole = Generator(seed=3).chunk(1, 10)
    generator = Generator(seed=3)
    halves = [generator.chunk(1, 5), generator.chunk(6, 5)]
    assert [c["id"] for h in halves for c in h.customers] == [c["id"] for c in whole.customers]
    assert sum(len(h.orders) for h in halves) == len(whole.orders)


def test_every_order_line_and_shipment_points_at_real_rows() -> None:
    generator = Generator(seed=1)
    chunk = generator.chunk(1, 200)
    skus = {p["sku"] for p in generator.products}
    order_ids = {o["id"] for o in chunk.orders}
    assert {line["sku"] for line in chunk.order_lines} <= skus
    assert {line["order_id"] for line in chunk.order_lines} == order_ids
    tracked = {o["tracking_number"] for o in chunk.orders if o["tracking_number"]}
    assert tracked == {s["trackingNumber"] for s in chunk.shipments}
    members = {m["customerId"] for m in chunk.members}
    loyalty_ids = {
        i["value"][3:].lstrip("0")
        for p in chunk.profiles
        for i in p["identities"]
        if i["type"] == "LOYALTY_NUMBER"
    }
    assert loyalty_ids <= members
    # Averages the bench relies on: ~10 orders and ~50 interactions per customer.
    assert 7 <= len(chunk.orders) / 200 <= 13
    assert 40 <= len(chunk.interactions) / 200 <= 60
