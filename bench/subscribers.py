"""The `subscriptions` workload: many WebSocket subscribers, changes at a fixed rate.

N subscribers (graphql-transport-ws) each follow one customer's `customerChanged`; a driver
makes contact changes over HTTP at a fixed rate, round robin over those customers. Every
delivery's latency is measured from the change's commit time (`occurredAt`) to its arrival;
an expected delivery that never arrives is counted lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from api.settings import Settings
from bench.credentials import bench_authorization

SUBSCRIBE = """subscription($id: ID!) {
  customerChanged(customerId: $id) { eventId eventType occurredAt } }"""
# What this workload's changes publish. Anything else a subscriber gets (the ingest workload's
# interactions, still being relayed, dated by their upstream time) is not this run's to time.
TIMED = "customer.contact_changed"
CHANGE = """mutation($input: UpdateCustomerContactInput!) {
  updateCustomerContact(input: $input) { __typename } }"""
SETTLE_SECONDS = 5.0
PROTOCOL = Subprotocol("graphql-transport-ws")


@dataclass(frozen=True)
class SubscriptionRun:
    subscribers: int
    events: int
    expected: int
    delivered: int
    lost: int
    latencies_ms: list[float]
    connect_seconds: float


async def _subscriber(
    url: str,
    customer_id: int,
    ready: asyncio.Event,
    arrived: list[float],
    opened: list[int],
    authorization: str,
) -> None:
    async with connect(url, subprotocols=[PROTOCOL], open_timeout=60, max_queue=None) as ws:
        init = {"type": "connection_init", "payload": {"authorization": authorization}}
        await ws.send(orjson.dumps(init).decode())
        await _expect(ws, "connection_ack")
        await ws.send(
            orjson.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": {"id": str(customer_id)}},
                }
            ).decode()
        )
        opened.append(customer_id)
        await ready.wait()
        # Iterate, do not poll: thousands of subscribers polling would make the load
        # generator, not the server, the bottleneck. The run ends by cancelling this task.
        async for raw in ws:
            message = orjson.loads(raw)
            if message["type"] == "ping":
                await ws.send('{"type": "pong"}')
            elif message["type"] == "next":
                change = message["payload"]["data"]["customerChanged"]
                if change["eventType"] != TIMED:
                    continue
                committed = dt.datetime.fromisoformat(change["occurredAt"]).timestamp()
                arrived.append((time.time() - committed) * 1000)


async def _expect(ws: ClientConnection, kind: str) -> None:
    while True:
        async with asyncio.timeout(60):
            message = orjson.loads(await ws.recv())
        if message["type"] == kind:
            return


async def run_subscribers(
    base_url: str, customer_ids: list[int], *, subscribers: int, rate: float, seconds: float
) -> SubscriptionRun:
    """Connect `subscribers` subscribers, make `rate` changes a second for `seconds`, and
    count what arrives."""
    ws_url = base_url.replace("http://", "ws://") + "/graphql"
    targets = [customer_ids[n % len(customer_ids)] for n in range(subscribers)]
    per_customer: dict[int, int] = {}
    for customer_id in targets:
        per_customer[customer_id] = per_customer.get(customer_id, 0) + 1
    ready = asyncio.Event()
    latencies: list[float] = []
    opened: list[int] = []
    authorization = bench_authorization(Settings())
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(_subscriber(ws_url, c, ready, latencies, opened, authorization))
        for c in targets
    ]
    while len(opened) < subscribers:
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise RuntimeError(f"a subscriber failed: {failed[0].exception()!r}")
        await asyncio.sleep(0.05)
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(1.0)  # every subscription registered on the server
    ready.set()
    customers = list(per_customer)
    expected = events = 0
    headers = {"authorization": authorization}
    async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=headers) as http:
        begun = time.perf_counter()
        deadline = begun + seconds
        n = 0
        while time.perf_counter() < deadline:
            customer_id = customers[n % len(customers)]
            response = await http.post(
                "/graphql",
                json={
                    "query": CHANGE,
                    "variables": {
                        "input": {"customerId": str(customer_id), "firstName": f"Bench{n}"}
                    },
                },
            )
            if response.json()["data"]["updateCustomerContact"]["__typename"].endswith("Success"):
                events += 1
                expected += per_customer[customer_id]
            n += 1
            await asyncio.sleep(max(0.0, begun + n / rate - time.perf_counter()))
    settle = time.perf_counter() + SETTLE_SECONDS
    # Poll with a deadline: what is still on its way gets SETTLE_SECONDS to arrive.
    while len(latencies) < expected and time.perf_counter() < settle:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return SubscriptionRun(
        subscribers=subscribers,
        events=events,
        expected=expected,
        delivered=len(latencies),
        lost=max(0, expected - len(latencies)),
        latencies_ms=sorted(latencies),
        connect_seconds=connect_seconds,
    )
