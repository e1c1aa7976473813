"""A rolling restart of two c360 processes under load loses no request and no event.

Two instances share the stores and Redis. Clients send queries and contact changes through a
balancer of their own (round robin; a request refused at connect, or dropped before any answer,
goes to the next instance, as a load balancer retries it; changes carry an Idempotency-Key, so
a retried change applies once), and a subscriber follows the customer, moving to another
instance when its own says it is stopping (SHUTTING_DOWN, `resumeAfter`). Each instance in turn
is sent SIGTERM and replaced by a new process. Every request must be answered, every change
delivered to the subscriber once and in order."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from api.connections import Connections
from sources.net import free_port, stop_process
from sources.sql.models import OutboxEvent
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT
from tests.builders import build_customer
from tests.waits import until
from tests.ws.test_across_instances import ready, serving_subscriptions, shared_env
from tests.ws.test_subscriptions import CONTACT, graphql_ws, next_message, subscribe

__all__ = ["shared_env"]  # the fixture, used by name

QUERY = """query($id: ID!) { customer(id: $id) { id email orders(first: 3) { totalCount } } }"""
# Failures a balancer retries on another instance: nothing was answered.
UNANSWERED = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)


@dataclass
class Fleet:
    """The running instances, by name, and how to start and stop one."""

    env: dict[str, str]
    logs: Path
    running: dict[str, tuple[str, subprocess.Popen[bytes]]] = field(default_factory=dict)
    turn: Iterator[int] = field(default_factory=itertools.count)

    async def start(self, name: str) -> str:
        url, process = _spawn(self.env, self.logs / f"{name}.log")
        self.running[name] = (url, process)
        await ready(url, process)
        return url

    async def stop(self, name: str) -> None:
        """SIGTERM, as an orchestrator stops a pod; the instance stays listed (a balancer
        learns it is gone when it refuses connections) until it has exited."""
        _, process = self.running[name]
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 60)
        del self.running[name]

    def next_url(self) -> str:
        urls = [url for url, _ in self.running.values()]
        return urls[next(self.turn) % len(urls)]

    def stop_all(self) -> None:
        for _, process in self.running.values():
            stop_process(process)


def _spawn(env: dict[str, str], log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "api.cli", "serve", "--port", str(port)),
                *("--no-access-log", "--log-level", "warning"),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return f"http://127.0.0.1:{port}", process


@contextlib.asynccontextmanager
async def fleet_of(env: dict[str, str], logs: Path, *names: str) -> Any:
    fleet = Fleet(env, logs)
    try:
        for name in names:
            await fleet.start(name)
        yield fleet
    finally:
        fleet.stop_all()


async def balanced(
    fleet: Fleet, http: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    """POST /graphql to the next instance, and to the next again while none answers."""
    for _ in range(200):
        try:
            return await http.post(f"{fleet.next_url()}/graphql", json=body, headers=headers)
        except UNANSWERED:
            await asyncio.sleep(0.02)
    raise AssertionError("no instance answered")


@dataclass
class Load:
    """What the clients sent and got."""

    answers: list[httpx.Response] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)  # the changes applied, in order


async def keep_asking(fleet: Fleet, cid: int, load: Load, stop: asyncio.Event) -> None:
    """Queries, and every fourth request a contact change, until `stop`; one at a time, so the
    changes apply in the order sent."""
    async with httpx.AsyncClient(headers=AGENT, timeout=30) as http:
        for n in itertools.count():
            if stop.is_set():
                return
            if n % 4 == 3:
                email = f"roll.{cid}.{n}@example.com"
                body = {
                    "query": CONTACT,
                    "variables": {"input": {"customerId": str(cid), "email": email}},
                }
                key = {"idempotency-key": uuid.uuid4().hex}
                answer = await balanced(fleet, http, body, key)
                load.emails.append(email)
            else:
                answer = await balanced(
                    fleet, http, {"query": QUERY, "variables": {"id": str(cid)}}, {}
                )
            load.answers.append(answer)


async def follow(
    fleet: Fleet, cid: int, received: list[dict[str, Any]], told: list[str | None]
) -> None:
    """Subscribe to the customer's changes, and subscribe again elsewhere after each event
    the last instance delivered whenever it stops."""
    after: str | None = None
    while True:
        url = fleet.next_url()
        try:
            async with graphql_ws(url) as ws:
                await subscribe(ws, cid, after=after)
                while True:
                    message = await next_message(ws)
                    if message["type"] == "complete":
                        break
                    errors = message["payload"].get("errors")
                    if errors:
                        [error] = errors
                        assert error["extensions"]["code"] == "SHUTTING_DOWN", error
                        told.append(error["extensions"]["resumeAfter"])
                        after = error["extensions"]["resumeAfter"] or after
                        continue
                    change = message["payload"]["data"]["customerChanged"]
                    received.append(change)
                    after = change["eventId"]
        except (OSError, ConnectionClosed, TimeoutError):
            pass  # refused, or closed under us: subscribe again after the last event received
        await asyncio.sleep(0.05)


@pytest.mark.usefixtures("only_these_processes_relay")
async def test_a_rolling_restart_under_load_loses_no_request_and_no_event(
    shared_env: dict[str, str],
    tmp_path: Path,
    connections: Connections,
    vendor_store: VendorStore,
) -> None:
    cid = await build_customer(connections, vendor_store, orders=2)
    load = Load()
    received: list[dict[str, Any]] = []
    told: list[str | None] = []  # the resumeAfter of each stopping instance's message
    async with fleet_of(shared_env, tmp_path, "a", "b") as fleet:
        stop = asyncio.Event()
        following = asyncio.create_task(follow(fleet, cid, received, told))
        await until(
            lambda: _any_serving_subscriptions(fleet), what="the subscription on an instance"
        )
        asking = asyncio.create_task(keep_asking(fleet, cid, load, stop))
        await until(lambda: _asked(load, 20), what="load before the restart")
        for name in ("a", "b"):
            seen = len(load.answers)
            await fleet.stop(name)  # ... while requests keep coming ...
            await fleet.start(f"{name}2")
            await until(lambda: _asked(load, seen + 20), what="load after a restart")  # noqa: B023
        stop.set()
        await asking
        await until(
            lambda: _delivered(received, load.emails, following),
            what="every change at the subscriber",
        )
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following

    assert len(load.answers) >= 60 and len(load.emails) >= 15
    statuses = {answer.status_code for answer in load.answers}
    assert statuses == {200}, statuses
    assert [a.json() for a in load.answers if "errors" in a.json()] == []
    # Each change's event once, in the order the changes were committed. (The customer is
    # resolved when an event is delivered: a resumed subscription's replay shows it as it is
    # now, so only the last one must show the last change.)
    async with connections.engine.connect() as sql:
        committed = (
            (
                await sql.execute(
                    select(OutboxEvent.event_id)
                    .where(
                        OutboxEvent.subject == str(cid),
                        OutboxEvent.type == "customer.contact_changed",
                    )
                    .order_by(OutboxEvent.id)
                )
            )
            .scalars()
            .all()
        )
    assert len(committed) == len(load.emails)
    assert [change["eventId"] for change in received] == committed
    assert received[-1]["customer"]["email"] == load.emails[-1]
    # Stopped under the subscriber's feet, an instance told it where to resume (again, to a
    # subscription it refused while it was telling the others).
    assert told and all(after in committed for after in told if after)


async def _any_serving_subscriptions(fleet: Fleet) -> bool:
    for url, _ in list(fleet.running.values()):
        with contextlib.suppress(httpx.HTTPError):
            if await serving_subscriptions(url):
                return True
    return False


async def _asked(load: Load, count: int) -> bool:
    return len(load.answers) >= count


async def _delivered(
    received: list[dict[str, Any]], emails: list[str], following: asyncio.Task[None]
) -> bool:
    if following.done():
        following.result()  # the subscriber failed: its error, not a wait's timeout
    return len(received) >= len(emails)
