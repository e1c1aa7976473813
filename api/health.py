"""Liveness and readiness: /healthz says the process answers, /readyz that every store does.

/readyz is anonymous (balancers call it without credentials), so it must not let anyone make
c360 check every store as often as they like: each instance checks at most once a second,
concurrent callers share the check in flight, and everyone else gets the last result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.connections import Connections
from sources.thirdparty.client import VendorClient

READY_TIMEOUT = 2.0
# How long one check's result answers /readyz before the next caller starts another.
READY_CACHE_SECONDS = 1.0


async def _check_sql(connections: Connections) -> None:
    async with connections.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _check_mongo(connections: Connections) -> None:
    await connections.db.command("ping")


def _check_vendor(client: VendorClient) -> Callable[[Connections], Awaitable[None]]:
    async def check(_connections: Connections) -> None:
        # Any answer below 500 means the vendor is reachable; a 5xx or no answer means not.
        status = await client.status(client.api.health_path)
        if status >= 500:
            raise RuntimeError(f"status {status}")

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


class Readiness:
    """The stores' status, checked at most once per `fresh_for` seconds, shared by all callers."""

    def __init__(self, connections: Connections, fresh_for: float = READY_CACHE_SECONDS) -> None:
        self._checks: dict[str, Callable[[Connections], Awaitable[None]]] = {
            "sql": _check_sql,
            "mongo": _check_mongo,
            **{name: _check_vendor(client) for name, client in connections.vendors.items()},
        }
        self._connections = connections
        self._fresh_for = fresh_for
        self._last: dict[str, dict[str, object]] | None = None
        self._checked_at = 0.0
        self._running: asyncio.Task[dict[str, dict[str, object]]] | None = None

    async def stores(self) -> dict[str, dict[str, object]]:
        """Each store's status: the last result while fresh, else the one in flight or a new one."""
        if self._last is not None and time.monotonic() - self._checked_at < self._fresh_for:
            return self._last
        if self._running is None:
            self._running = asyncio.create_task(self._check())
        # Shielded: a caller that gives up must not cancel the check the others wait for.
        return await asyncio.shield(self._running)

    async def _check(self) -> dict[str, dict[str, object]]:
        try:
            results = await asyncio.gather(
                *(_probe(check, self._connections) for check in self._checks.values())
            )
            self._last = dict(zip(self._checks, results, strict=True))
            self._checked_at = time.monotonic()
            return self._last
        finally:
            self._running = None

    async def close(self) -> None:
        """Let a check still in flight end (within READY_TIMEOUT) before its connections close."""
        # Not cancelled: a vendor request cut short while connecting leaves its socket open.
        running = self._running
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)


async def readyz(request: Request) -> JSONResponse:
    """Each store's status; 503 when any is down, so a balancer stops sending traffic."""
    readiness: Readiness = request.app.state.readiness
    stores = await readiness.stores()
    ready = all(store["status"] == "up" for store in stores.values())
    return JSONResponse(
        {"status": "ready" if ready else "unready", "stores": stores},
        status_code=200 if ready else 503,
    )
