"""Mutations that are safe to retry: store connection loss is a coded, retryable error for what
did not commit, what committed is never reported as failed, and an Idempotency-Key makes a
retry answer the first result instead of changing anything twice."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from api.connections import Connections
from api.idempotency import LEASE_MARGIN_SECONDS, request_hash
from api.settings import Settings
from domain.principal import Role
from sources.sql import models
from sources.thirdparty.simulator import VendorStore
from tests.auth import bearer
from tests.builders import build_customer
from tests.conftest import running_app
from tests.queries import graphql

CONTACT = """mutation($input: UpdateCustomerContactInput!) { updateCustomerContact(input: $input) {
  __typename
  ... on UpdateCustomerContactSuccess { eventId customer { id lastName } }
  ... on UpdateCustomerContactError { code message field } } }"""

CONSENT = """mutation($input: SetConsentInput!) { setConsent(input: $input) {
  __typename
  ... on SetConsentSuccess { eventId }
  ... on SetConsentError { code } } }"""

MERGE = """mutation($survivor: ID!, $merged: ID!) {
  mergeCustomers(survivorId: $survivor, mergedId: $merged) { __typename
    ... on MergeCustomersSuccess { eventIds merge { id moved { orders tickets } } }
    ... on MergeCustomersError { code } } }"""

ADDRESS = """mutation($input: SetAddressInput!) { setAddress(input: $input) { __typename
  ... on AddressSuccess { eventId customer { id } }
  ... on AddressError { code field } } }"""

HOME = {"kind": "HOME", "city": "Leeds", "postalCode": "LS1", "country": "GB"}
ADDRESS_CHANGED = "customer.address_changed"

# Mutations each worker of the stream sends, one after another.
ROUNDS = 12
WORKERS = 4


def _postgres_only(connections: Connections) -> None:
    if connections.engine.dialect.name != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")


TERMINATOR = "c360-test-terminator"


@contextlib.asynccontextmanager
async def _terminator(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Connections of the test's own to its database, which the terminations spare."""
    engine = create_async_engine(
        settings.resolved_database_url(),
        isolation_level="AUTOCOMMIT",
        connect_args={"server_settings": {"application_name": TERMINATOR}},
    )
    try:
        yield engine
    finally:
        await engine.dispose()


async def _terminate_app_backends(engine: AsyncEngine) -> int:
    """Terminate the app's backends: every one of this test's own database but the test's."""
    async with engine.connect() as connection:
        killed = await connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name <> :spared"
            ),
            {"spared": TERMINATOR},
        )
        return int(killed.scalar_one())


class Stream:
    """The mutation stream's progress, which paces the terminations (not the clock)."""

    def __init__(self) -> None:
        self.finished = 0
        self.done = False
        self._moved = asyncio.Event()

    def step(self) -> None:
        """One more mutation of the stream finished."""
        self.finished += 1
        self._moved.set()

    def end(self) -> None:
        self.done = True
        self._moved.set()

    async def terminations(self, engine: AsyncEngine) -> int:
        """Terminate the app's backends, again each time every worker has finished one more
        mutation, until the stream ends; returns how many times."""
        rounds = 0
        while not self.done:
            await _terminate_app_backends(engine)
            rounds += 1
            target = self.finished + WORKERS
            while self.finished < target and not self.done:
                await self._moved.wait()
                self._moved.clear()
        return rounds


def _outcome(body: dict[str, Any], field: str) -> str:
    """'ok' for a success, else the one error code the response carries."""
    result = (body.get("data") or {}).get(field)
    if result is not None and not body.get("errors"):
        assert result["__typename"].endswith("Success"), body
        return "ok"
    codes = {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
    assert result is None and len(codes) == 1, body
    return str(codes.pop())


async def test_terminated_connections_fail_mutations_only_as_retryable_and_never_lose_one(
    client: httpx.AsyncClient,
    connections: Connections,
    settings: Settings,
    vendor_store: VendorStore,
) -> None:
    _postgres_only(connections)
    customers = [await build_customer(connections, vendor_store) for _ in range(WORKERS)]
    outcomes: dict[str, list[tuple[int, str, str | None]]] = {
        "contact": [],
        "address": [],
        "consent": [],
    }
    stream = Stream()

    async def worker(customer_id: int) -> None:
        for n in range(ROUNDS):
            if n % 3 == 1:
                # Its answer is built from what was read before the change: no read after the
                # commit can fail it.
                address = {**HOME, "customerId": str(customer_id), "line1": f"{n} Stream Road"}
                body = await graphql(client, ADDRESS, {"input": address})
                outcome = _outcome(body, "setAddress")
                event = body["data"]["setAddress"]["eventId"] if outcome == "ok" else None
                outcomes["address"].append((customer_id, outcome, event))
            elif n % 3 == 2:
                body = await graphql(
                    client,
                    CONSENT,
                    {"input": {"customerId": str(customer_id), "channel": "SMS", "granted": True}},
                )
                outcome = _outcome(body, "setConsent")
                event = body["data"]["setConsent"]["eventId"] if outcome == "ok" else None
                outcomes["consent"].append((customer_id, outcome, event))
            else:
                name = f"Stream{n}"
                body = await graphql(
                    client,
                    CONTACT,
                    {"input": {"customerId": str(customer_id), "lastName": name}},
                )
                outcome = _outcome(body, "updateCustomerContact")
                result = body["data"]["updateCustomerContact"] if outcome == "ok" else None
                if result is not None:
                    assert result["customer"]["lastName"] == name
                outcomes["contact"].append(
                    (customer_id, outcome, result["eventId"] if result else None)
                )
            stream.step()

    async with _terminator(settings) as engine:
        killer = asyncio.create_task(stream.terminations(engine))
        try:
            await asyncio.gather(*(worker(c) for c in customers))
        finally:
            stream.end()
            rounds = await killer
    assert rounds >= ROUNDS // 2
    every = [outcome for kind in outcomes.values() for outcome in kind]
    assert {outcome for _, outcome, _ in every} <= {"ok", "SOURCE_UNAVAILABLE"}, every
    # Once the terminations stop, the next change of each customer is made: no connection the
    # server ended is used again.
    for customer_id in customers:
        body = await graphql(
            client, CONTACT, {"input": {"customerId": str(customer_id), "lastName": "After"}}
        )
        assert _outcome(body, "updateCustomerContact") == "ok", body
        event = body["data"]["updateCustomerContact"]["eventId"]
        outcomes["contact"].append((customer_id, "ok", event))

    # Every reported success is stored with its event, and nothing else is.
    for kind, type in (("contact", "customer.contact_changed"), ("address", ADDRESS_CHANGED)):
        async with connections.engine.connect() as sql:
            rows = (
                await sql.execute(
                    select(models.OutboxEvent.event_id).where(
                        models.OutboxEvent.subject.in_([str(c) for c in customers]),
                        models.OutboxEvent.type == type,
                    )
                )
            ).all()
        succeeded = {event for _, outcome, event in outcomes[kind] if outcome == "ok"}
        assert {event for (event,) in rows} == succeeded, kind
    consent_ok = {event for _, outcome, event in outcomes["consent"] if outcome == "ok"}
    mongo_events = {
        doc["_id"]
        async for doc in connections.db.outbox.find(
            {
                "payload.type": "consent.changed",
                "payload.subject": {"$in": [str(c) for c in customers]},
            },
            {"_id": 1},
        )
    }
    assert mongo_events == consent_ok


KEY = "idempotency-key"


async def _post(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], key: str
) -> httpx.Response:
    return await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={KEY: key}
    )


async def _contact_events(connections: Connections, customer_id: int) -> list[dict[str, Any]]:
    """The data of every contact change event of a customer, oldest first."""
    async with connections.engine.connect() as sql:
        rows = (
            await sql.execute(
                select(models.OutboxEvent.payload)
                .where(
                    models.OutboxEvent.subject == str(customer_id),
                    models.OutboxEvent.type == "customer.contact_changed",
                )
                .order_by(models.OutboxEvent.id)
            )
        ).all()
    return [payload["data"] for (payload,) in rows]


async def test_a_retry_with_the_same_key_answers_the_first_result_and_changes_nothing(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    key = str(uuid.uuid4())
    change = {"input": {"customerId": str(cid), "lastName": "Once"}}
    first = await _post(client, CONTACT, change, key)
    assert first.status_code == 200
    assert first.json()["data"]["updateCustomerContact"]["__typename"] == (
        "UpdateCustomerContactSuccess"
    )
    assert "idempotent-replayed" not in first.headers
    # The name changes meanwhile: a retry still answers what the first request answered.
    await graphql(client, CONTACT, {"input": {"customerId": str(cid), "lastName": "Later"}})
    retry = await _post(client, CONTACT, change, key)
    assert retry.status_code == 200
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    assert await _contact_events(connections, cid) == [
        {"last_name": "Once"},
        {"last_name": "Later"},
    ]

    # A MongoDB change: its retry neither writes nor publishes a second time.
    consent = {"input": {"customerId": str(cid), "channel": "POST", "granted": True}}
    mongo_key = str(uuid.uuid4())
    first = await _post(client, CONSENT, consent, mongo_key)
    retry = await _post(client, CONSENT, consent, mongo_key)
    assert first.json()["data"]["setConsent"]["__typename"] == "SetConsentSuccess"
    assert retry.content == first.content
    events = connections.db.outbox.find(
        {"payload.type": "consent.changed", "payload.subject": str(cid)}
    )
    assert len(await events.to_list(None)) == 1


async def test_the_same_key_with_another_request_is_refused(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    key = str(uuid.uuid4())
    await _post(client, CONTACT, {"input": {"customerId": str(cid), "lastName": "First"}}, key)
    other = await _post(
        client, CONTACT, {"input": {"customerId": str(cid), "lastName": "Second"}}, key
    )
    assert other.status_code == 422
    [error] = other.json()["errors"]
    assert error["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await _contact_events(connections, cid) == [{"last_name": "First"}]
    # Keys are each principal's own: another caller's same key is another key.
    mine = await client.post(
        "/graphql",
        json={
            "query": CONTACT,
            "variables": {"input": {"customerId": str(cid), "lastName": "Third"}},
        },
        headers={KEY: key, **bearer(Role.ADMIN)},
    )
    assert mine.json()["data"]["updateCustomerContact"]["__typename"] == (
        "UpdateCustomerContactSuccess"
    )
    bad = await _post(client, CONTACT, {"input": {"customerId": str(cid)}}, "no spaces")
    assert bad.status_code == 400


async def test_concurrent_requests_with_one_key_apply_once(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    key = str(uuid.uuid4())
    change = {"input": {"customerId": str(cid), "lastName": "Concurrent"}}
    answers = await asyncio.gather(*(_post(client, CONTACT, change, key) for _ in range(6)))
    applied = [a for a in answers if a.status_code == 200]
    busy = [a for a in answers if a.status_code == 409]
    assert len(applied) + len(busy) == len(answers), [a.text for a in answers]
    assert applied and len({a.content for a in applied}) == 1
    assert {a.json()["errors"][0]["extensions"]["code"] for a in busy} <= {"IDEMPOTENCY_KEY_IN_USE"}
    assert all(a.headers["retry-after"] == "1" for a in busy)
    assert await _contact_events(connections, cid) == [{"last_name": "Concurrent"}]
    # Once answered, the key gives the answer to everyone who retries.
    retry = await _post(client, CONTACT, change, key)
    assert retry.content == applied[0].content


AGENT_KEYS = "jwt:test-agent"  # the principal the test client's token names


async def _put_key(
    connections: Connections,
    key: str,
    *,
    request: tuple[str, dict[str, Any]],
    claimed: dt.timedelta = dt.timedelta(0),
    applied: bool = False,
    expires: dt.timedelta = dt.timedelta(hours=1),
) -> None:
    """A key as a request left it `claimed` ago (and still holds it, or died holding it)."""
    now = dt.datetime.now(dt.UTC)
    async with connections.engine.begin() as sql:
        await sql.execute(
            insert(models.IdempotencyKey),
            {
                "principal": AGENT_KEYS,
                "key": key,
                "request_hash": request_hash(request[0], None, request[1]),
                "token": uuid.uuid4().hex,
                "claimed_at": now - claimed,
                "applied_at": now - claimed if applied else None,
                "expires_at": now + expires,
                "status": None,
                "response": None,
            },
        )


def _code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])


async def test_a_key_whose_request_died_runs_again_only_if_nothing_committed(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    long_ago = dt.timedelta(minutes=5)

    def contact(name: str) -> tuple[str, dict[str, Any]]:
        return CONTACT, {"input": {"customerId": str(cid), "lastName": name}}

    # Still held by a running request: wait for its answer.
    await _put_key(connections, "running", request=contact("Running"))
    busy = await _post(client, *contact("Running"), "running")
    assert (busy.status_code, _code(busy)) == (409, "IDEMPOTENCY_KEY_IN_USE")
    # Its request died before the change committed: this one makes it.
    await _put_key(connections, "died", request=contact("Died"), claimed=long_ago)
    again = await _post(client, *contact("Died"), "died")
    assert again.json()["data"]["updateCustomerContact"]["customer"]["lastName"] == "Died"
    # Its request died after the change committed: never made twice.
    await _put_key(connections, "made", request=contact("Made"), claimed=long_ago, applied=True)
    made = await _post(client, *contact("Made"), "made")
    assert (made.status_code, _code(made)) == (409, "ALREADY_APPLIED")
    # Past its window a key is forgotten, and may name another request.
    await _put_key(connections, "old", request=contact("Old"), expires=-dt.timedelta(seconds=1))
    reused = await _post(client, *contact("New"), "old")
    assert reused.json()["data"]["updateCustomerContact"]["customer"]["lastName"] == "New"
    assert await _contact_events(connections, cid) == [{"last_name": "Died"}, {"last_name": "New"}]

    # A MongoDB change committed with its key's marker, and its request died before SQL heard
    # of it: the marker refuses the change a second time.
    consent = (CONSENT, {"input": {"customerId": str(cid), "channel": "SMS", "granted": True}})
    await _put_key(connections, "mongo", request=consent, claimed=long_ago)
    await connections.db.idempotency.insert_one(
        {"_id": f"{AGENT_KEYS}\nmongo", "expires_at": dt.datetime.now(dt.UTC) + long_ago}
    )
    refused = await _post(client, *consent, "mongo")
    assert refused.json()["data"] == {"setConsent": None}
    assert _code(refused) == "ALREADY_APPLIED"
    events = connections.db.outbox.find(
        {"payload.type": "consent.changed", "payload.subject": str(cid)}
    )
    assert await events.to_list(None) == []


async def test_keyed_mongodb_changes_delete_expired_markers_a_hundred_at_a_time(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    markers = connections.db.idempotency
    now = dt.datetime.now(dt.UTC)
    await markers.insert_many(
        [
            {"_id": f"expired-{uuid.uuid4()}", "expires_at": now - dt.timedelta(seconds=1)}
            for _ in range(150)
        ]
    )
    live = f"live-{uuid.uuid4()}"
    await markers.insert_one({"_id": live, "expires_at": now + dt.timedelta(hours=1)})

    async def expired() -> int:
        return await markers.count_documents({"expires_at": {"$lt": dt.datetime.now(dt.UTC)}})

    before = await expired()
    for round, channel in enumerate(("SMS", "EMAIL"), start=1):
        consent = {"input": {"customerId": str(cid), "channel": channel, "granted": True}}
        answer = await _post(client, CONSENT, consent, str(uuid.uuid4()))
        assert answer.json()["data"]["setConsent"]["__typename"] == "SetConsentSuccess"
        assert await expired() == max(0, before - 100 * round)
    assert await markers.count_documents({"_id": live}) == 1


async def test_a_merge_retried_with_its_key_is_made_once(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    survivor = await build_customer(connections, vendor_store)
    merged = await build_customer(connections, vendor_store)
    variables = {"survivor": str(survivor), "merged": str(merged)}
    key = str(uuid.uuid4())
    first = await _post(client, MERGE, variables, key)
    assert first.json()["data"]["mergeCustomers"]["__typename"] == "MergeCustomersSuccess"
    retry = await _post(client, MERGE, variables, key)
    assert retry.content == first.content
    # Without the key, the same request is a new one: the customer is merged already.
    fresh = await graphql(client, MERGE, variables)
    assert fresh["data"]["mergeCustomers"]["code"] == "ALREADY_MERGED"


async def _until_free(engine: AsyncEngine, settings: Settings, key: str) -> None:
    """Wait until the request holding `key` has answered, or its lease has run out."""
    lease = settings.execution_timeout + LEASE_MARGIN_SECONDS
    deadline = asyncio.get_running_loop().time() + lease + 10
    table = models.IdempotencyKey
    while True:
        async with engine.connect() as sql:
            row = (
                await sql.execute(
                    select(table.token, table.claimed_at).where(
                        table.principal == AGENT_KEYS, table.key == key
                    )
                )
            ).first()
        now = dt.datetime.now(dt.UTC)
        if row is None or row.token is None or row.claimed_at + dt.timedelta(seconds=lease) < now:
            return
        assert asyncio.get_running_loop().time() < deadline, f"key {key} is held for good"
        await asyncio.sleep(0.05)


async def _stored_answer(engine: AsyncEngine, key: str) -> bytes | None:
    table = models.IdempotencyKey
    async with engine.connect() as sql:
        return (
            await sql.execute(
                select(table.response).where(table.principal == AGENT_KEYS, table.key == key)
            )
        ).scalar_one()


async def test_keyed_retries_while_connections_are_terminated_make_each_change_once(
    connections: Connections, settings: Settings, vendor_store: VendorStore
) -> None:
    _postgres_only(connections)
    customers = [await build_customer(connections, vendor_store) for _ in range(WORKERS)]
    answered: list[tuple[str, dict[str, Any], bytes]] = []
    stream = Stream()
    # A short deadline, so that a key whose holder could not store its answer is free soon.
    quick = settings.model_copy(update={"execution_timeout": 2.0})

    async def worker(http: httpx.AsyncClient, engine: AsyncEngine, customer_id: int) -> None:
        for n in range(ROUNDS):
            key = str(uuid.uuid4())
            change = {"input": {"customerId": str(customer_id), "lastName": f"Keyed{n}"}}
            for _ in range(50):
                response = await _post(http, CONTACT, change, key)
                if response.status_code == 200 and response.json()["data"]["updateCustomerContact"]:
                    answered.append((key, change, response.content))
                    break
                code = _code(response)
                assert code in {"SOURCE_UNAVAILABLE", "IDEMPOTENCY_KEY_IN_USE", "ALREADY_APPLIED"}
                if code == "ALREADY_APPLIED":
                    break  # made, though its answer was lost: the events below tell
                if code == "IDEMPOTENCY_KEY_IN_USE":
                    await _until_free(engine, quick, key)
            else:
                raise AssertionError(f"{key} never answered")
            stream.step()

    async with running_app(quick) as (_, http), _terminator(settings) as engine:
        killer = asyncio.create_task(stream.terminations(engine))
        try:
            await asyncio.gather(*(worker(http, engine, c) for c in customers))
        finally:
            stream.end()
            assert await killer >= ROUNDS // 2
        # Each change made exactly once, in order, whatever the retries.
        for customer_id in customers:
            events = await _contact_events(connections, customer_id)
            assert events == [{"last_name": f"Keyed{n}"} for n in range(ROUNDS)]
        # A later retry answers what the first answered; when that answer could not be kept
        # (the store failed each time it was written), it says the change was made.
        assert answered
        replayed = 0
        for key, change, content in answered:
            retry = await _post(http, CONTACT, change, key)
            if await _stored_answer(engine, key) is not None:
                assert retry.content == content
                replayed += 1
            else:
                assert _code(retry) in {"IDEMPOTENCY_KEY_IN_USE", "ALREADY_APPLIED"}
        assert replayed
