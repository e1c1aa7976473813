"""The vendor simulator: loyalty and carrier-tracking APIs over real HTTP, with faults.

It stands in for the vendors the way their sandboxes do: c360 reaches it through the same
client as the real APIs. Its data lives in a small SQLite file the seeder fills. Latency and
failures are configurable at start and at run time (`PUT /_simulator/faults`), per vendor, so
tests and the bench can make a vendor slow or down without touching c360.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sources.catalog import VENDORS
from sources.net import free_port
from sources.thirdparty.loyalty import LOYALTY, MEMBERS_BATCH
from sources.thirdparty.tracking import SHIPMENTS_BATCH, TRACKING

MAX_BATCH = 500


class VendorStore:
    """The simulator's data: loyalty members by customer id, shipments by tracking number."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS members (id TEXT PRIMARY KEY, doc TEXT)")
            self._db.execute("CREATE TABLE IF NOT EXISTS shipments (id TEXT PRIMARY KEY, doc TEXT)")

    def put(self, table: str, docs: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Insert or replace documents by id."""
        rows = [(key, json.dumps(doc)) for key, doc in docs]
        with self._lock, self._db:
            self._db.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", rows)

    def get(self, table: str, keys: list[str]) -> list[dict[str, Any]]:
        """The documents whose ids are in `keys` (unknown ids are left out)."""
        marks = ",".join("?" * len(keys))
        with self._lock:
            rows = self._db.execute(f"SELECT doc FROM {table} WHERE id IN ({marks})", keys)
            return [json.loads(doc) for (doc,) in rows]

    def count(self, table: str) -> int:
        with self._lock:
            (n,) = self._db.execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(n)

    def clear(self) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM members")
            self._db.execute("DELETE FROM shipments")

    def close(self) -> None:
        self._db.close()


@dataclass
class Faults:
    """Per-vendor fault injection: added latency and the share of requests that fail."""

    latency_ms: float = 0.0
    failure_rate: float = 0.0


def create_simulator_app(
    store: VendorStore, *, latency_ms: float = 0.0, failure_rate: float = 0.0
) -> Starlette:
    """The simulator's ASGI app."""
    faults = {api.name: Faults(latency_ms, failure_rate) for api in VENDORS}
    chance = random.Random(0)

    async def inject(vendor: str) -> JSONResponse | None:
        fault = faults[vendor]
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.failure_rate and chance.random() < fault.failure_rate:
            return JSONResponse({"error": "simulated outage"}, status_code=503)
        return None

    async def batch(
        request: Request, vendor: str, table: str, field: str, out: str
    ) -> JSONResponse:
        # Read the body first: a client that gave up during the simulated latency is gone.
        body = await request.json()
        if failed := await inject(vendor):
            return failed
        keys = body.get(field)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            return JSONResponse({"error": f"{field} must be a list of strings"}, status_code=400)
        if len(keys) > MAX_BATCH:
            return JSONResponse({"error": f"at most {MAX_BATCH} keys"}, status_code=400)
        return JSONResponse({out: store.get(table, keys) if keys else []})

    async def members(request: Request) -> JSONResponse:
        return await batch(request, LOYALTY.name, "members", "customerIds", "members")

    async def shipments(request: Request) -> JSONResponse:
        return await batch(request, TRACKING.name, "shipments", "trackingNumbers", "shipments")

    async def set_faults(request: Request) -> JSONResponse:
        body = await request.json()
        targets = [body["vendor"]] if body.get("vendor") else list(faults)
        for vendor in targets:
            faults[vendor] = Faults(
                float(body.get("latencyMs", 0.0)), float(body.get("failureRate", 0.0))
            )
        return JSONResponse({v: vars(f) for v, f in faults.items()})

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route(MEMBERS_BATCH, members, methods=["POST"]),
            Route(SHIPMENTS_BATCH, shipments, methods=["POST"]),
            Route("/_simulator/faults", set_faults, methods=["PUT"]),
            Route("/healthz", health),
        ]
    )


@contextlib.contextmanager
def running_simulator(
    store_path: Path, *, latency_ms: float = 0.0, failure_rate: float = 0.0
) -> Iterator[str]:
    """Serve the simulator on a free local port in a background thread; yields its URL.

    A thread with its own event loop keeps the simulator's simulated latency off c360's loop,
    as a real vendor's would be.
    """
    store = VendorStore(store_path)
    app = create_simulator_app(store, latency_ms=latency_ms, failure_rate=failure_rate)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="vendor-simulator", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the vendor simulator failed to start")
            threading.Event().wait(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
