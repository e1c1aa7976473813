"""Liveness and readiness: /healthz says the process answers, /readyz that every store does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.connections import Connections

READY_TIMEOUT = 2.0


async def _check_sql(connections: Connections) -> None:
    async with connections.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _check_mongo(connections: Connections) -> None:
    await connections.db.command("ping")


def _check_vendor(client: httpx.AsyncClient) -> Callable[[Connections], Awaitable[None]]:
    async def check(_connections: Connections) -> None:
        # Any answer below 500 means the vendor is reachable; a 5xx or no answer means not.
        response = await client.get("/healthz")
        if response.status_code >= 500:
            raise RuntimeError(f"status {response.status_code}")

    return check


async def _probe(
    check: Callable[[Connections], Awaitable[None]], connections: Connections
) -> dict[str, object]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await check(connections)
    except Exception as error:
        return {"status": "down", "error": type(error).__name__}
    return {"status": "up", "latencyMs": round((time.perf_counter() - started) * 1000, 1)}


async def healthz(_request: Request) -> JSONResponse:
    """The process is alive and its event loop answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Each store's status; 503 when any is down, so a balancer stops sending traffic."""
    connections: Connections = request.app.state.connections
    checks = {
        "sql": _check_sql,
        "mongo": _check_mongo,
        "loyalty": _check_vendor(connections.loyalty),
        "tracking": _check_vendor(connections.tracking),
    }
    results = await asyncio.gather(*(_probe(c, connections) for c in checks.values()))
    stores = dict(zip(checks, results, strict=True))
    ready = all(r["status"] == "up" for r in results)
    return JSONResponse(
        {"status": "ready" if ready else "unready", "stores": stores},
        status_code=200 if ready else 503,
    )
