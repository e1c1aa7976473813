"""c360 processes sharing the stores and Redis: a change made on one reaches a subscriber on
another, and a server killed between commit and publication loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from api.connections import Connections
from api.settings import Settings
from api.source_settings import url_variable
from sources.catalog import VENDORS
from sources.net import free_port, stop_process
from sources.sql.models import OutboxEvent
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer
from tests.waits import until
from tests.ws.test_subscriptions import (
    SUBSCRIBE,
    change_email,
    graphql_ws,
    next_message,
    subscribe,
)


@pytest.fixture
def shared_env(
    settings: Settings, redis_url: str, redis_namespace: str, tmp_path: Path
) -> dict[str, str]:
    """The environment of c360 processes sharing this test's stores and Redis."""
    return {
        **os.environ,
        "C360_DATA_DIR": str(tmp_path),
        "C360_DATABASE_URL": settings.resolved_database_url(),
        "C360_MONGO_URL": settings.mongo_url or "",
        "C360_MONGO_DATABASE": settings.mongo_database,
        **{url_variable(api): settings.vendor_url(api.name) or "" for api in VENDORS},
        "C360_REDIS_URL": redis_url,
        "C360_CACHE_NAMESPACE": redis_namespace,
    }


@contextlib.contextmanager
def server(
    env: dict[str, str], log: Path, *arguments: str, **overrides: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
                *arguments,
            ],
            env={**env, **overrides},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            stop_process(process)


async def ready(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            assert process.poll() is None, "the server exited"
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


async def serving_subscriptions(url: str, count: int = 1) -> bool:
    """Whether the server at `url` serves `count` subscriptions or more (its /metrics gauge)."""
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{url}/metrics")).text
    return any(
        line.startswith("c360_subscriptions ") and float(line.split()[1]) >= count
        for line in metrics.splitlines()
    )


@pytest.mark.usefixtures("only_these_processes_relay")
async def test_a_change_on_one_instance_reaches_a_subscriber_on_the_other(
    shared_env: dict[str, str],
    tmp_path: Path,
    connections: Connections,
    vendor_store: VendorStore,
) -> None:
    cid = await build_customer(connections, vendor_store)
    with (
        server(shared_env, tmp_path / "a.log") as (a, pa),
        server(shared_env, tmp_path / "b.log") as (b, pb),
    ):
        await ready(a, pa)
        await ready(b, pb)
        async with graphql_ws(b) as ws:
            await subscribe(ws, cid)
            await until(lambda: serving_subscriptions(b), what="the subscription on b")
            await change_email(a, cid, f"cross.{cid}@example.com")
            message = await next_message(ws)
            change = message["payload"]["data"]["customerChanged"]
            assert change["customer"]["email"] == f"cross.{cid}@example.com"


@pytest.mark.usefixtures("only_these_processes_relay")
async def test_a_server_killed_between_commit_and_publish_loses_nothing(
    shared_env: dict[str, str],
    tmp_path: Path,
    connections: Connections,
    vendor_store: VendorStore,
) -> None:
    cid = await build_customer(connections, vendor_store)
    # The listener publishes nothing itself, so only the writer's outbox can deliver.
    with server(shared_env, tmp_path / "listener.log", C360_RELAY_ENABLED="false") as (b, pb):
        await ready(b, pb)
        async with graphql_ws(b) as ws:
            await subscribe(ws, cid)
            # The writer commits with its relay off (as if it died before publishing) ...
            with server(shared_env, tmp_path / "writer.log", C360_RELAY_ENABLED="false") as (a, pa):
                await ready(a, pa)
                await change_email(a, cid, f"survived.{cid}@example.com")
                pa.send_signal(signal.SIGKILL)  # ... and is killed outright.
                pa.wait()
            async with connections.engine.connect() as sql:
                pending = (
                    (
                        await sql.execute(
                            select(OutboxEvent.type).where(
                                OutboxEvent.subject == str(cid), OutboxEvent.published_at.is_(None)
                            )
                        )
                    )
                    .scalars()
                    .all()
                )
            assert pending == ["customer.contact_changed"]  # committed, not published
            # Restarted, its relay finds the committed row and publishes it.
            with server(shared_env, tmp_path / "writer.log") as (a, pa):
                await ready(a, pa)
                message = await next_message(ws)
                change = message["payload"]["data"]["customerChanged"]
                assert change["eventType"] == "customer.contact_changed"
                assert change["customer"]["email"] == f"survived.{cid}@example.com"


@pytest.mark.usefixtures("only_these_processes_relay")
async def test_a_stopping_instance_tells_each_subscriber_where_to_resume(
    shared_env: dict[str, str],
    tmp_path: Path,
    connections: Connections,
    vendor_store: VendorStore,
) -> None:
    cid = await build_customer(connections, vendor_store)
    with (
        server(shared_env, tmp_path / "stopping.log") as (a, pa),
        server(shared_env, tmp_path / "staying.log") as (b, pb),
    ):
        await ready(a, pa)
        await ready(b, pb)
        async with graphql_ws(a) as ws:
            await subscribe(ws, cid)
            await until(lambda: serving_subscriptions(a), what="the subscription on a")
            await change_email(b, cid, f"before.{cid}@example.com")
            delivered = (await next_message(ws))["payload"]["data"]["customerChanged"]["eventId"]
            # A second subscription, live from after that event, has delivered nothing yet.
            await ws.send(
                json.dumps(
                    {
                        "id": "2",
                        "type": "subscribe",
                        "payload": {"query": SUBSCRIBE, "variables": {"id": str(cid)}},
                    }
                )
            )
            await until(lambda: serving_subscriptions(a, 2), what="the second subscription on a")

            pa.send_signal(signal.SIGTERM)
            last = [await next_message(ws) for _ in range(4)]  # each told, then complete
            with pytest.raises(ConnectionClosed) as closed:
                await next_message(ws)
        told = next(m for m in last if m["id"] == "1" and m["type"] == "next")
        completed = next(m for m in last if m["id"] == "1" and m["type"] == "complete")
        quiet = next(m for m in last if m["id"] == "2" and m["type"] == "next")
        # Stopped as SIGTERM stops `c360 serve` (`api.cli._exit_on_sigterm`).
        assert pa.wait(timeout=60) == 128 + signal.SIGTERM

        # A change while no one listens is not lost: resumed on the instance that stays.
        await change_email(b, cid, f"meanwhile.{cid}@example.com")
        async with graphql_ws(b) as again:
            await subscribe(
                again, cid, after=told["payload"]["errors"][0]["extensions"]["resumeAfter"]
            )
            resumed = (await next_message(again))["payload"]["data"]["customerChanged"]

    assert told["type"] == "next", told
    [error] = told["payload"]["errors"]
    assert error["extensions"] == {"code": "SHUTTING_DOWN", "resumeAfter": delivered}
    assert delivered in error["message"]
    assert completed == {"id": "1", "type": "complete"}
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert resumed["customer"]["email"] == f"meanwhile.{cid}@example.com"
    # Told to resume after the last event the hub had read when it went live: the first's.
    assert quiet["payload"]["errors"][0]["extensions"]["resumeAfter"] == delivered
