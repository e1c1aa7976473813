"""Liveness and readiness."""

from __future__ import annotations

import httpx


async def test_healthz_says_alive(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_each_store(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["stores"]) == {"sql", "mongo", "loyalty", "tracking"}
    assert {s["status"] for s in body["stores"].values()} == {"up"}
