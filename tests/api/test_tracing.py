"""Traces: one trace per request, continuing the caller's, with the expected children; spans
exported over OTLP/HTTP; no personal data in any span; nothing at all when tracing is off."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette

from api.app import create_app
from api.examples import EXAMPLE_CUSTOMER
from api.logs import JsonFormatter
from api.settings import Settings
from api.tracing import TracingMiddleware
from bench.otlp import otlp_receiver
from sources import tracing
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT, PUBLISHER
from tests.builders import build_customer
from tests.http.test_events_applied import BATCH, cloud_event
from tests.waits import until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"

AGENT_QUERY = """query Agent($id: ID!) { customer(id: $id) {
  id name email phone addresses { city } profile { segments } loyalty { tier }
  orders(first: 5) { edges { node { number lines { product { name } } shipment { status } } } }
} }"""


@contextlib.asynccontextmanager
async def traced(
    settings: Settings, exporter: InMemorySpanExporter | None = None
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    app = create_app(settings, span_exporter=exporter)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://c360.test", headers=AGENT
        ) as http:
            yield app, http


@pytest.fixture
async def spans(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, Any]]:
    """A traced app, its client, and a function returning the spans finished so far."""
    exporter = InMemorySpanExporter()
    async with traced(settings, exporter) as (app, http):

        def finished() -> list[ReadableSpan]:
            app.state.traces.force_flush()
            return list(exporter.get_finished_spans())

        yield app, http, finished
    assert tracing.TRACER is None  # off again once the app has stopped


def _hex(number: int, width: int) -> str:
    return f"{number:0{width}x}"


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        ancestor = by_id[parent.span_id]
        names.append(ancestor.name)
        parent = ancestor.parent
    return names


async def test_an_agent_query_is_one_trace_continuing_the_callers(spans: Any) -> None:
    _, http, finished = spans
    cid = EXAMPLE_CUSTOMER  # seeded, with shipped orders
    response = await http.post(
        "/graphql",
        json={"query": AGENT_QUERY, "variables": {"id": str(cid)}},
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 200 and "errors" not in response.json()
    mine = [s for s in finished() if _hex(s.context.trace_id, 32) == TRACE_ID]
    by_id = {s.context.span_id: s for s in mine}
    [server] = [s for s in mine if s.name == "query Agent"]
    assert _hex(server.parent.span_id, 16) == PARENT_SPAN and server.parent.is_remote
    assert server.attributes["graphql.operation.type"] == "query"
    assert server.attributes["graphql.operation.name"] == "Agent"
    assert server.attributes["http.response.status_code"] == 200
    children = {s.name for s in mine if s.parent and s.parent.span_id == server.context.span_id}
    assert {"graphql.parse", "graphql.validate", "graphql.cost", "graphql.execute"} <= children
    loads = [s for s in mine if s.name.startswith("load ")]
    # A new app, so a cold cache: every source the query reads was asked, under execute.
    assert {s.attributes["c360.source"] for s in loads} == {"sql", "mongo", "loyalty", "tracking"}
    for load in loads:
        assert _ancestors(load, by_id)[-2:] == ["graphql.execute", "query Agent"], load.name
        assert load.attributes["c360.keys"] >= 1
        assert 0 <= load.attributes["c360.fetched"] <= load.attributes["c360.keys"]
    # Under each batch, the store calls themselves: a statement, a command, a vendor POST.
    calls = {
        by_id[s.parent.span_id].attributes["c360.source"]: s
        for s in mine
        if s.kind is SpanKind.CLIENT and by_id[s.parent.span_id].name.startswith("load ")
    }
    assert set(calls) == {"sql", "mongo", "loyalty", "tracking"}, calls
    assert calls["sql"].name == "sql SELECT"
    assert calls["sql"].attributes["db.query.text"].lstrip().upper().startswith("SELECT")
    assert calls["mongo"].name.startswith("mongo ")
    assert calls["mongo"].attributes["db.system.name"] == "mongodb"
    assert calls["loyalty"].name == "POST loyalty"
    assert calls["loyalty"].attributes["http.response.status_code"] == 200

    # The same query again, from another parent span: its spans are its own, none of them
    # under the first request's (the test settings keep the entity cache off, so it loads).
    second_parent = "00f067aa0ba902b8"
    again = await http.post(
        "/graphql",
        json={"query": AGENT_QUERY, "variables": {"id": str(cid)}},
        headers={"traceparent": TRACEPARENT.replace(PARENT_SPAN, second_parent)},
    )
    assert again.status_code == 200 and "errors" not in again.json()
    done = finished()
    by_id = {s.context.span_id: s for s in done}
    [second] = [s for s in done if s.parent and _hex(s.parent.span_id, 16) == second_parent]
    first_ids = {s.context.span_id for s in mine}
    new = [s for s in done if s.context.span_id not in first_ids and s.name.startswith("load ")]
    assert {s.attributes["c360.source"] for s in new} == {"sql", "mongo", "loyalty", "tracking"}
    for load in new:
        assert _ancestors(load, by_id)[-2:] == ["graphql.execute", second.name], load.name
        execute = by_id[load.parent.span_id]
        while execute.name != "graphql.execute":
            execute = by_id[execute.parent.span_id]
        assert execute.parent.span_id == second.context.span_id


async def test_without_a_traceparent_a_request_starts_its_own_trace(spans: Any) -> None:
    _, http, finished = spans
    response = await http.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 200
    [server] = [s for s in finished() if s.name == "query"]
    assert server.parent is None
    assert "graphql.operation.name" not in server.attributes


async def test_a_caller_that_did_not_sample_its_trace_gets_no_spans(spans: Any) -> None:
    _, http, finished = spans
    unsampled = TRACEPARENT[:-2] + "00"  # the flags: not sampled
    response = await http.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"traceparent": unsampled}
    )
    assert response.status_code == 200
    assert [s for s in finished() if _hex(s.context.trace_id, 32) == TRACE_ID] == []


async def test_ingestion_the_relay_and_the_hub_are_traced(
    spans: Any, vendor_store: VendorStore, only_these_processes_relay: None
) -> None:
    app, http, finished = spans
    cid = await build_customer(app.state.connections, vendor_store, orders=0)
    events = [
        cloud_event(
            "interaction.recorded",
            cid,
            {"type": "CALL", "channel": "CONTACT_CENTER", "occurred_at": "2026-11-01T10:00:00Z"},
        )
        for _ in range(3)
    ]
    async with app.state.connections.hub.subscribe(str(cid), lambda _: True):
        response = await http.post(
            "/events",
            content=orjson.dumps(events),
            headers=PUBLISHER | {"content-type": BATCH, "traceparent": TRACEPARENT},
        )
        assert response.status_code == 202

        # The relay publishes in the background as soon as the write commits, and the hub
        # offers what it reads to the subscription.
        def spanned(name: str, attribute: str) -> int:
            return sum(s.attributes[attribute] for s in finished() if s.name == name)

        await until(lambda: spanned("relay", "c360.events") >= 3, "the relay's spans")
        await until(lambda: spanned("hub.deliver", "c360.subscriptions") >= 3, "the hub's spans")
    done = finished()
    [server] = [s for s in done if s.name == "POST /events"]
    assert _hex(server.context.trace_id, 32) == TRACE_ID
    [ingest] = [s for s in done if s.name == "ingest"]
    assert ingest.parent.span_id == server.context.span_id
    assert ingest.attributes["c360.events"] == 3
    # Work of their own, in the background.
    assert all(s.parent is None for s in done if s.name in ("relay", "hub.deliver"))


async def test_no_span_holds_personal_data(
    spans: Any, vendor_store: VendorStore, caplog: pytest.LogCaptureFixture
) -> None:
    app, http, finished = spans
    email, phone = "ada.lovelace@traces.example", "+442079460123"
    cid = await build_customer(
        app.state.connections, vendor_store, contact={"email": email, "phone": phone}
    )
    answered = await http.post(
        "/graphql", json={"query": AGENT_QUERY, "variables": {"id": str(cid)}}
    )
    assert answered.json()["data"]["customer"]["email"] == email
    search = (
        "query Find($q: String!) { searchCustomers(query: $q, first: 5) { edges { node { id } } } }"
    )
    await http.post("/graphql", json={"query": search, "variables": {"q": email}})
    # The same in the document, and in a document that fails to parse (its error quotes it).
    await http.post("/graphql", json={"query": f'{{ searchCustomers(query: "{phone}") {{ edges'})
    await http.post(
        "/graphql", json={"query": f'{{ searchCustomers(query: "{email}", first: 1) {{ x }} }}'}
    )
    done = finished()
    assert len(done) > 10
    text = repr(
        [
            (s.name, dict(s.attributes or {}), [e.attributes for e in s.events], s.status)
            for s in done
        ]
    )
    for secret in (email, email.split("@")[0], phone, phone.lstrip("+"), "2079460123"):
        assert secret not in text, secret


def test_json_log_lines_carry_the_current_trace(spans: Any) -> None:
    assert tracing.TRACER is not None
    record = logging.LogRecord("c360.test", logging.INFO, __file__, 1, "hello", None, None)
    with tracing.TRACER.start_as_current_span("work") as span:
        line = orjson.loads(JsonFormatter().format(record))
    assert line["trace_id"] == _hex(span.get_span_context().trace_id, 32)
    assert line["span_id"] == _hex(span.get_span_context().span_id, 16)
    outside = orjson.loads(JsonFormatter().format(record))
    assert "trace_id" not in outside


async def test_off_there_is_no_tracer_no_middleware_and_no_span(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    assert app.state.traces is None
    assert all(m.cls is not TracingMiddleware for m in app.user_middleware)
    assert tracing.TRACER is None
    assert tracing.span("anything") is tracing.span("other")  # one shared null context
    response = await client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 200


async def test_spans_are_exported_over_otlp_http(settings: Settings) -> None:
    with otlp_receiver(keep=True) as (url, received):
        configured = settings.model_copy(update={"otel_exporter_otlp_endpoint": url})
        async with traced(configured) as (_, http):
            response = await http.post(
                "/graphql",
                json={"query": "query Ping { __typename }"},
                headers={"traceparent": TRACEPARENT},
            )
            assert response.status_code == 200
        # The app has stopped: its spans were flushed on the way out.
    assert received.bodies, "nothing reached the collector"
    exported = ExportTraceServiceRequest()
    names: dict[str, str] = {}
    for path, content_type, body in received.bodies:
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        exported.ParseFromString(body)
        for resource in exported.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            assert service["service.name"] == "c360"
            for scope in resource.scope_spans:
                for span in scope.spans:
                    names[span.name] = span.trace_id.hex()
    assert names["query Ping"] == TRACE_ID
    assert {"graphql.parse", "graphql.validate", "graphql.execute"} <= set(names)


ASKS = {"traceId": True}
TYPENAME = "query Ping { __typename }"


async def test_a_request_that_asks_gets_its_trace_id_in_extensions(spans: Any) -> None:
    _, http, finished = spans
    continued = await http.post(
        "/graphql",
        json={"query": TYPENAME, "extensions": ASKS},
        headers={"traceparent": TRACEPARENT},
    )
    own = await http.post("/graphql", json={"query": TYPENAME, "extensions": ASKS})
    unasked = await http.post("/graphql", json={"query": TYPENAME})

    assert continued.json()["extensions"] == {"traceId": TRACE_ID}
    servers = [s for s in finished() if s.name == "query Ping"]
    assert len(servers) == 3
    assert own.json()["extensions"]["traceId"] == _hex(servers[1].context.trace_id, 32)
    assert own.json()["extensions"]["traceId"] != TRACE_ID
    assert "extensions" not in unasked.json()


async def test_tracing_off_the_trace_id_asked_for_is_the_callers(settings: Settings) -> None:
    async with traced(settings) as (_, http):
        sent = await http.post(
            "/graphql",
            json={"query": TYPENAME, "extensions": ASKS},
            headers={"traceparent": TRACEPARENT},
        )
        none = await http.get(
            "/graphql", params={"query": TYPENAME, "extensions": '{"traceId":true}'}
        )
    assert sent.json() == {"data": {"__typename": "Query"}, "extensions": {"traceId": TRACE_ID}}
    assert none.json()["extensions"] == {"traceId": None}
    async with traced(settings.model_copy(update={"batch_enabled": True})) as (_, http):
        batch = await http.post(
            "/graphql",
            json=[{"query": TYPENAME, "extensions": ASKS}, {"query": TYPENAME}],
            headers={"traceparent": TRACEPARENT},
        )
    asked, unasked = batch.json()
    assert asked["extensions"] == {"traceId": TRACE_ID} and "extensions" not in unasked


async def test_an_answer_from_the_response_cache_carries_the_asking_requests_trace(
    cached_settings: Settings, vendor_store: VendorStore
) -> None:
    other = "0af7651916cd43dd8448eb211c80319c"
    async with traced(cached_settings) as (app, http):
        cid = await build_customer(app.state.connections, vendor_store)
        body = {"query": AGENT_QUERY, "variables": {"id": str(cid)}}
        kept = await http.post(
            "/graphql", json=body | {"extensions": ASKS}, headers={"traceparent": TRACEPARENT}
        )
        hit = await http.post(
            "/graphql",
            json=body | {"extensions": ASKS},
            headers={"traceparent": f"00-{other}-{PARENT_SPAN}-01", "x-c360-cache": "report"},
        )
        plain = await http.post("/graphql", json=body)
    assert kept.json()["extensions"] == {"traceId": TRACE_ID}
    assert hit.json()["extensions"] == {"cache": "hit", "traceId": other}
    assert "extensions" not in plain.json()  # the kept answer holds no trace of its own
    assert plain.json()["data"] == kept.json()["data"]
