"""Redis killed under load and started again: no request fails, and nothing stale is served.

The app runs against a Redis of the test's own (never the shared one), which keeps its data
on disk: when it comes back it still holds the entries cached before the outage, so a missed
invalidation would show as a customer answered with the contact details it had before.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.app import create_app
from api.connections import Connections
from api.settings import Settings
from sources.cache.backends import RedisBackend
from sources.net import free_port
from sources.sql import models
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT
from tests.builders import build_customer
from tests.conftest import serving
from tests.services import own_redis, wait_for_redis
from tests.waits import until

CUSTOMER = """query($id: ID!) { customer(id: $id) {
  id email firstName orders(first: 2) { edges { node { id status } } } } }"""
CUSTOMER_SHA = hashlib.sha256(CUSTOMER.encode()).hexdigest()

CONTACT = """mutation($input: UpdateCustomerContactInput!) { updateCustomerContact(input: $input) {
  __typename
  ... on UpdateCustomerContactSuccess { eventId customer { id email } }
  ... on UpdateCustomerContactError { code message } } }"""

READERS = 6


@dataclass
class Load:
    """What the clients sent and got back."""

    responses: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    # The email each customer's last change set (one writer per customer: its state).
    emails: dict[int, str] = field(default_factory=dict)
    successes: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, kind: str) -> int:
        return sum(1 for k, _, _ in self.responses if k == kind)


async def post(http: httpx.AsyncClient, load: Load, kind: str, body: dict[str, Any]) -> Any:
    response = await http.post("/graphql", json=body)
    payload = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {"text": response.text}
    )
    load.responses.append((kind, response.status_code, payload))
    return payload


async def read(http: httpx.AsyncClient, load: Load, customers: list[int]) -> None:
    for n in itertools.count():
        if load.stop.is_set():
            return
        cid = customers[n % len(customers)]
        await post(
            http,
            load,
            "query",
            {
                "query": CUSTOMER,
                "variables": {"id": str(cid)},
                # Registers the document each time: automatic persisted queries in Redis too.
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": CUSTOMER_SHA}},
            },
        )


async def write(http: httpx.AsyncClient, load: Load, cid: int) -> None:
    for n in itertools.count():
        if load.stop.is_set():
            return
        email = f"v{n}.{cid}@example.com"
        body = await post(
            http,
            load,
            "mutation",
            {"query": CONTACT, "variables": {"input": {"customerId": str(cid), "email": email}}},
        )
        result = (body.get("data") or {}).get("updateCustomerContact") or {}
        if result.get("__typename") == "UpdateCustomerContactSuccess":
            load.emails[cid] = email
            load.successes += 1


def internal_errors(load: Load) -> list[tuple[str, int, dict[str, Any]]]:
    return [
        (kind, status, body)
        for kind, status, body in load.responses
        if status >= 500
        or any(
            (error.get("extensions") or {}).get("code") == "INTERNAL_SERVER_ERROR"
            for error in body.get("errors") or []
        )
    ]


async def outbox_events(
    connections: Connections, customers: list[int], *, unpublished: bool
) -> int:
    """How many outbox events of `customers` were committed (or are still to be published)."""
    query = (
        select(func.count())
        .select_from(models.OutboxEvent)
        .where(models.OutboxEvent.subject.in_([str(c) for c in customers]))
    )
    if unpublished:
        query = query.where(models.OutboxEvent.published_at.is_(None))
    async with connections.engine.connect() as sql:
        return int(await sql.scalar(query) or 0)


async def all_published(connections: Connections, customers: list[int]) -> bool:
    """Whether the relay has published every committed event of `customers`."""
    return not await outbox_events(connections, customers, unpublished=True)


@pytest.mark.usefixtures("only_these_processes_relay")
async def test_redis_killed_under_load_fails_no_request_and_leaves_nothing_stale(
    settings: Settings,
    connections: Connections,
    vendor_store: VendorStore,
    redis_namespace: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    customers = [await build_customer(connections, vendor_store) for _ in range(4)]
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    flaky = settings.model_copy(
        update={
            "cache_enabled": True,
            "redis_url": url,
            "cache_namespace": redis_namespace,
            "redis_breaker_seconds": 0.3,
            "relay_poll_seconds": 0.1,
            "rate_limit_principal": "100000/minute",
            "rate_limit_ip": "100000/minute",
        }
    )
    load = Load()
    application = create_app(flaky)
    with own_redis(port, keep_in=tmp_path) as redis_process:
        await wait_for_redis(url)
        async with (
            application.router.lifespan_context(application),
            serving(application) as base_url,
            httpx.AsyncClient(base_url=base_url, headers=AGENT, timeout=30) as http,
        ):
            backend = application.state.connections.cache.backend
            assert isinstance(backend, RedisBackend)
            # Every customer cached before the outage, as Redis keeps it through the restart.
            for cid in customers:
                await post(http, load, "query", {"query": CUSTOMER, "variables": {"id": str(cid)}})
            clients = [
                *(asyncio.create_task(read(http, load, customers)) for _ in range(READERS)),
                *(asyncio.create_task(write(http, load, cid)) for cid in customers),
            ]
            try:
                await until(lambda: load.successes >= 8, "changes before the outage", 20)
                redis_process.kill()
                redis_process.wait()
                during = load.successes
                await until(lambda: backend.errors > 0, "the cache to notice", 10)
                # Changes whose invalidations Redis missed, to be applied when it is back.
                await until(lambda: load.successes >= during + 12, "changes in the outage", 20)
                assert backend._pending, "invalidations were kept for Redis's return"
                with own_redis(port, keep_in=tmp_path):
                    await wait_for_redis(url)
                    after = len(load.responses)
                    await until(lambda: not backend._pending, "the missed invalidations", 20)
                    await until(lambda: len(load.responses) >= after + 100, "load after", 30)
                    load.stop.set()
                    await asyncio.gather(*clients)
                    # Served from Redis again, and as the last change left each customer.
                    for cid in customers:
                        body = await post(
                            http, load, "query", {"query": CUSTOMER, "variables": {"id": str(cid)}}
                        )
                        assert body["data"]["customer"]["email"] == load.emails[cid], cid
                    await until(
                        lambda: all_published(connections, customers),
                        "the relay to publish what it kept",
                        20,
                    )
            finally:
                load.stop.set()
                await asyncio.gather(*clients, return_exceptions=True)

    assert internal_errors(load) == []
    mutations = [body for kind, _, body in load.responses if kind == "mutation"]
    assert all(
        body["data"]["updateCustomerContact"]["__typename"] == "UpdateCustomerContactSuccess"
        for body in mutations
    ), [b for b in mutations if "errors" in b][:3]
    committed = await outbox_events(connections, customers, unpublished=False)
    assert committed == load.successes == len(mutations), "each committed change said so"
    # One line when the relay lost the bus and one when it was back, not one per pass.
    relay_lines = [r for r in caplog.records if r.name == "sources.events.outbox"]
    assert [r.getMessage().split(":")[0] for r in relay_lines] == ["outbox relay"] * 2
    assert "down" in relay_lines[0].getMessage() and "back up" in relay_lines[1].getMessage()
    # c360's own loggers only: asyncpg may report a connection attempt it abandoned itself
    # ("Future exception was never retrieved" from its TLS probe), which is not c360's log.
    ours = [r for r in caplog.records if r.name.split(".")[0] in {"api", "resolvers", "sources"}]
    assert not any(r.exc_info for r in ours), "no tracebacks for an outage"
