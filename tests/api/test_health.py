"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import time

import httpx

from api.connections import Connections
from api.health import READY_CACHE_SECONDS
from sources.catalog import NAMES


async def test_healthz_says_alive(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_each_store(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert list(body["stores"]) == list(NAMES)  # every declared source, in the catalog's order
    assert {s["status"] for s in body["stores"].values()} == {"up"}


async def test_readyz_checks_the_stores_at_most_once_a_second(
    client: httpx.AsyncClient, connections: Connections
) -> None:
    before = connections.round_trips.snapshot()
    started = time.monotonic()
    # The concurrent callers arrive while the first one's check is in flight: they share it.
    concurrent = await asyncio.gather(*(client.get("/readyz") for _ in range(30)))
    one_by_one = [await client.get("/readyz") for _ in range(30)]
    elapsed = time.monotonic() - started
    assert {r.status_code for r in concurrent + one_by_one} == {200}
    checks = connections.round_trips.since(before)
    # However busy the machine, one check per started second at most.
    most = 1 + int(elapsed / READY_CACHE_SECONDS)
    # Counted by the vendors' calls, which nothing else in an idle app makes (the outbox relay
    # polls SQL, and MongoDB's ping is housekeeping to the round-trip counter).
    for store in ("loyalty", "tracking"):
        assert checks[store] <= most, (store, checks, elapsed)


async def test_readyz_checks_again_once_its_result_is_a_second_old(
    client: httpx.AsyncClient, connections: Connections
) -> None:
    before = connections.round_trips.snapshot()
    deadline = time.monotonic() + 10
    while connections.round_trips.since(before)["loyalty"] < 2:
        assert time.monotonic() < deadline, "/readyz never checked the stores again"
        assert (await client.get("/readyz")).status_code == 200
        await asyncio.sleep(0.05)
