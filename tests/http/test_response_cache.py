"""The response cache through HTTP: a repeated query is answered from its kept bytes without
executing, each view keeps its own answers, every kind of change makes the next read new on
another instance sharing Redis, a hit is audited as its miss was, and a Redis outage costs
speed, never an answer."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode, parse

from api.answers import cacheable
from api.connections import Connections
from api.execution import Executor
from api.settings import Settings
from bench.documents import AGENT_QUERY
from domain.principal import Role
from sources.cache.responses import Answer, ResponseCache
from sources.cache.responses import Reads as AnswerReads
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT, PUBLISHER, bearer
from tests.builders import build_customer
from tests.conftest import running_app
from tests.http.test_access import AUDIT
from tests.http.test_events_applied import CE, cloud_event
from tests.http.test_guards import trust
from tests.resolvers.test_merge import MERGE, UNMERGE
from tests.services import own_redis, wait_for_redis
from tests.trips import trips
from tests.ws.test_subscriptions import CONTACT

REPORT = {"x-c360-cache": "report"}
EMAIL = "query($id: ID!) { customer(id: $id) { id email } }"


async def _post(
    http: httpx.AsyncClient, query: str, variables: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response


async def _email(http: httpx.AsyncClient, cid: int, headers: dict[str, str] = AGENT) -> str:
    body = (await _post(http, EMAIL, {"id": str(cid)}, headers | REPORT)).json()
    assert "errors" not in body, body
    email: str = body["data"]["customer"]["email"]
    return email


@pytest.mark.parametrize(
    ("document", "kept"),
    [
        ('{ customer(id: "1") { id } }', True),
        ('{ ... on Query { customers(ids: ["1"]) { id } } __typename }', True),
        ('query { ...F } fragment F on Query { customer(id: "1") { id } }', True),
        ("{ __typename }", False),  # reads nothing: cheaper to answer than to look up
        ('{ customer(id: "1") { id } auditLog(customerId: "1") { edges { cursor } } }', False),
        ("query { ...F } fragment F on Query { __schema { queryType { name } } }", False),
        ('{ __type(name: "Customer") { name } customer(id: "1") { id } }', False),
        ('{ searchCustomers(query: "ada") { edges { cursor } } }', False),
        ("mutation { __typename }", False),
    ],
)
def test_only_queries_of_cacheable_root_fields_are_looked_up(document: str, kept: bool) -> None:
    parsed = parse(document)
    operation = parsed.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    assert cacheable(parsed, operation) is kept


async def test_a_repeated_query_is_its_kept_bytes_with_no_execution(
    cached_settings: Settings,
    connections: Connections,
    vendor_store: VendorStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cid = await build_customer(connections, vendor_store, orders=3)
    executed = 0
    execute = Executor.execute

    async def counted(self: Executor, *args: Any, **kwargs: Any) -> Any:
        nonlocal executed
        executed += 1
        return await execute(self, *args, **kwargs)

    monkeypatch.setattr(Executor, "execute", counted)
    variables = {"id": str(cid)}
    async with running_app(cached_settings) as (app, http):
        first = await _post(http, AGENT_QUERY, variables, AGENT)
        before = app.state.connections.round_trips.snapshot()
        second = await _post(http, AGENT_QUERY, variables, AGENT)
        spent = app.state.connections.round_trips.since(before)
        reported = (await _post(http, AGENT_QUERY, variables, AGENT | REPORT)).json()
        metrics = (await http.get("/metrics")).text
        # An agent's refresh asks for a fresh answer: executed, and not kept again.
        refreshed = await _post(http, AGENT_QUERY, variables, AGENT | {"cache-control": "no-cache"})
        assert refreshed.content == first.content and executed == 2
        metrics_after = (await http.get("/metrics")).text
    assert "errors" not in first.json()
    assert second.content == first.content
    assert 'c360_response_cache_events_total{event="stored"} 1.0' in metrics_after
    assert spent == trips()
    assert reported["extensions"] == {"cache": "hit"}
    assert 'c360_response_cache_events_total{event="hit"} 2.0' in metrics
    assert 'c360_response_cache_events_total{event="stored"} 1.0' in metrics


async def test_each_view_keeps_its_own_answers(
    cached_settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    analyst = bearer(Role.ANALYST)
    async with running_app(cached_settings) as (_, http):
        clear = await _email(http, cid)
        masked = await _email(http, cid, analyst)
        assert clear == f"test.{cid}@example.com" and masked != clear and "*" in masked
        for _ in range(2):  # answered from the cache now, each view its own
            assert await _email(http, cid) == clear
            assert await _email(http, cid, analyst) == masked
        # Another agent shares the agent's view; a customer principal has its own.
        other = bearer(Role.AGENT, subject="another-agent")
        body = (await _post(http, EMAIL, {"id": str(cid)}, other | REPORT)).json()
        assert body["extensions"] == {"cache": "hit"}


async def test_a_persisted_query_is_answered_from_the_cache_by_its_hash(
    cached_settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    query = f'{{ customer(id: "{cid}") {{ id email }} }}'
    persisted = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}
    }
    async with running_app(cached_settings) as (_, http):
        registered = await http.post(
            "/graphql", json={"query": query, "extensions": persisted}, headers=AGENT | REPORT
        )
        by_hash = await http.post(
            "/graphql", json={"extensions": persisted}, headers=AGENT | REPORT
        )
        as_text = await http.post("/graphql", json={"query": query}, headers=AGENT | REPORT)
    assert registered.json()["extensions"] == {"cache": "miss"}
    # The hash names the same text: the same answer, kept.
    for answer in (by_hash.json(), as_text.json()):
        assert answer["extensions"] == {"cache": "hit"}
        assert answer["data"] == registered.json()["data"]


async def test_a_trusted_document_is_answered_from_the_cache_once_it_is_trusted(
    cached_settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    allow_list = cached_settings.model_copy(update={"trusted_documents_only": True})
    me = bearer(Role.CUSTOMER, subject=str(cid)) | REPORT
    # Text of this test's own: trusted documents outlive a test, in the shared database.
    query = f"query Me($id: ID!) {{ customer(id: $id) {{ id email }} }} # {uuid.uuid4()}"
    variables = {"id": str(cid)}
    async with running_app(allow_list) as (app, http):
        # An agent's kept answer to the same text is no way around the allow-list.
        for _ in range(2):
            assert "errors" not in (await _post(http, query, variables, AGENT)).json()
            refused = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=me
            )
            assert refused.json()["errors"][0]["extensions"]["code"] == "DOCUMENT_NOT_TRUSTED"
        sha = await trust(app, query, f"me-{allow_list.mongo_database}")
        by_hash = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}}}
        answers = [
            (await http.post("/graphql", json=by_hash | {"variables": variables}, headers=me))
            for _ in range(2)
        ]
        in_full = await http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=me
        )
    assert [a.json()["extensions"]["cache"] for a in answers] == ["miss", "hit"]
    assert in_full.json()["extensions"] == {"cache": "hit"}
    assert answers[0].json()["data"]["customer"]["id"] == str(cid)
    assert answers[1].json()["data"] == in_full.json()["data"] == answers[0].json()["data"]


async def test_a_read_racing_a_write_never_keeps_the_old_answer(
    cached_settings: Settings,
    connections: Connections,
    vendor_store: VendorStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cid = await build_customer(connections, vendor_store)
    old, new = f"test.{cid}@example.com", f"raced.{cid}@example.com"
    executed, release = asyncio.Event(), asyncio.Event()
    kept: list[bool] = []
    put = ResponseCache.put

    async def held(
        self: ResponseCache, key: str, answer: Answer, reads: AnswerReads, read_at: float
    ) -> bool:
        if not release.is_set():  # the first read: executed, held before it keeps its answer
            executed.set()
            await release.wait()
        outcome = await put(self, key, answer, reads, read_at)
        kept.append(outcome)
        return outcome

    monkeypatch.setattr(ResponseCache, "put", held)
    async with running_app(cached_settings) as (_, http):
        reading = asyncio.create_task(_email(http, cid))
        await executed.wait()
        # The write commits (and invalidates) while the read holds its old answer.
        changed = await _post(
            http, CONTACT, {"input": {"customerId": str(cid), "email": new}}, AGENT
        )
        assert "Success" in changed.json()["data"]["updateCustomerContact"]["__typename"]
        release.set()
        assert await reading == old  # it began before the write
        assert kept == [False]  # and did not keep what it read
        assert [await _email(http, cid) for _ in range(2)] == [new, new]
        assert kept == [False, True]


async def test_every_change_makes_the_next_read_new_on_another_instance(
    shared_settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    shared = shared_settings
    cid = await build_customer(connections, vendor_store)
    other = await build_customer(connections, vendor_store)
    async with running_app(shared) as (_, http_a), running_app(shared) as (_, http_b):

        async def kept_on_b(expected: str) -> None:
            """B answers `expected`, then answers it again from the cache."""
            assert await _email(http_b, cid) == expected
            body = (await _post(http_b, EMAIL, {"id": str(cid)}, AGENT | REPORT)).json()
            assert body["extensions"] == {"cache": "hit"}

        await kept_on_b(f"test.{cid}@example.com")

        # A mutation on A.
        changed = await _post(
            http_a,
            CONTACT,
            {"input": {"customerId": str(cid), "email": f"mutated.{cid}@example.com"}},
            AGENT,
        )
        assert "Success" in changed.json()["data"]["updateCustomerContact"]["__typename"]
        await kept_on_b(f"mutated.{cid}@example.com")

        # An upstream event published to A.
        event = cloud_event("customer.contact_changed", cid, {"email": f"ce.{cid}@example.com"})
        published = await http_a.post(
            "/events", json=event, headers=PUBLISHER | {"content-type": CE}
        )
        assert published.status_code < 300, published.text
        await kept_on_b(f"ce.{cid}@example.com")

        # A merge on A: the merged customer's id answers the survivor.
        merged_view = (await _post(http_b, EMAIL, {"id": str(other)}, AGENT)).json()
        assert merged_view["data"]["customer"]["id"] == str(other)
        merge = (
            await _post(http_a, MERGE, {"survivor": str(cid), "merged": str(other)}, AGENT)
        ).json()["data"]["mergeCustomers"]
        assert merge["__typename"] == "MergeCustomersSuccess", merge
        after_merge = (await _post(http_b, EMAIL, {"id": str(other)}, AGENT)).json()
        assert after_merge["data"]["customer"]["id"] == str(cid)

        # And the unmerge: the merged customer answers for itself again.
        unmerge = (await _post(http_a, UNMERGE, {"id": merge["merge"]["id"]}, AGENT)).json()[
            "data"
        ]["unmergeCustomers"]
        assert unmerge["__typename"] == "UnmergeCustomersSuccess", unmerge
        after_unmerge = (await _post(http_b, EMAIL, {"id": str(other)}, AGENT)).json()
        assert after_unmerge["data"]["customer"]["id"] == str(other)


async def test_a_hit_records_the_audit_entries_its_miss_recorded(
    cached_settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    variables = {"id": str(cid)}
    async with running_app(cached_settings) as (app, http):
        audit = app.state.connections.audit
        for n, outcome in enumerate(("miss", "hit")):
            who = bearer(Role.AGENT, subject=f"agent-{n}") | {"x-request-id": f"req-{outcome}"}
            body = (await _post(http, AGENT_QUERY, variables, who | REPORT)).json()
            assert body["extensions"] == {"cache": outcome}
        await audit.flush()
        log = (await _post(http, AUDIT, variables, bearer(Role.ADMIN))).json()
    entries = {e["node"]["requestId"]: e["node"] for e in log["data"]["auditLog"]["edges"]}
    miss, hit = entries["req-miss"], entries["req-hit"]
    assert miss["fields"] and hit["fields"] == miss["fields"]
    assert (miss["principal"], hit["principal"]) == ("agent-0", "agent-1")


async def test_answers_keep_coming_through_a_redis_outage_and_caching_resumes(
    flaky_settings: Settings, connections: Connections, vendor_store: VendorStore, redis_port: int
) -> None:
    cid = await build_customer(connections, vendor_store)
    flaky = flaky_settings
    url = flaky.redis_url or ""
    variables = {"id": str(cid)}

    async def outcome(http: httpx.AsyncClient) -> str:
        body = (await _post(http, EMAIL, variables, AGENT | REPORT)).json()
        assert body["data"]["customer"]["email"] == f"test.{cid}@example.com", body
        cache: str = body["extensions"]["cache"]
        return cache

    with own_redis(redis_port) as redis_process:
        await wait_for_redis(url)
        async with running_app(flaky) as (_, http):
            assert [await outcome(http) for _ in range(2)] == ["miss", "hit"]
            redis_process.kill()
            redis_process.wait()
            assert [await outcome(http) for _ in range(3)] == ["miss"] * 3
            with own_redis(redis_port):
                await wait_for_redis(url)
                await asyncio.sleep(0.4)  # past the breaker
                assert [await outcome(http) for _ in range(2)] == ["miss", "hit"]
