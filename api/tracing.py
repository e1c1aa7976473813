"""OpenTelemetry traces: on when an OTLP endpoint is configured, absent when not.

On, each HTTP request is a server span that continues the caller's W3C `traceparent`, named
for its GraphQL operation once admitted (`query Agent`), with children for parse, validate,
cost and execute, one span per loader batch that reached its batch function (source, loader,
keys, how many the source was asked for), and spans for event ingestion, the outbox relay and
the hub's deliveries (`sources.tracing`). Spans go to `<endpoint>/v1/traces` over OTLP/HTTP in
batches from a background thread; shutdown flushes what is pending.

Off (no endpoint), nothing of this is installed: no middleware, no tracer, and every span
helper returns at its first line.

The standard variables are honoured: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and
`OTEL_EXPORTER_OTLP_ENDPOINT` turn tracing on like `C360_OTEL_EXPORTER_OTLP_ENDPOINT`;
`OTEL_SERVICE_NAME` or `service.name` in `OTEL_RESOURCE_ATTRIBUTES` name the service (default
`c360`); `OTEL_SDK_DISABLED=true` keeps tracing off; `OTEL_TRACES_SAMPLER`,
`OTEL_EXPORTER_OTLP_HEADERS` and the SDK's other variables reach it as the SDK reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import KNOWN_PATHS
from api.settings import Settings
from sources import tracing


def endpoint(settings: Settings) -> str | None:
    """Where spans go (the traces URL itself), or None when tracing is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    return None


def tracing_wanted(settings: Settings, exporter: SpanExporter | None = None) -> bool:
    """Whether the app traces: an endpoint is configured, or a test gives its exporter."""
    return exporter is not None or endpoint(settings) is not None


@contextlib.asynccontextmanager
async def tracing_on(
    settings: Settings, exporter: SpanExporter | None = None
) -> AsyncIterator[TracerProvider | None]:
    """Spans while the block runs (the app's lifespan), to the settings' endpoint or to
    `exporter`; flushed and stopped at its end. None (and nothing started) when tracing is
    off."""
    if exporter is None:
        url = endpoint(settings)
        if url is None:
            yield None
            return
        exporter = OTLPSpanExporter(endpoint=url)
    made = TracerProvider(resource=_resource())
    made.add_span_processor(BatchSpanProcessor(exporter))
    tracer = made.get_tracer("c360")
    tracing.start(tracer)
    try:
        yield made
    finally:
        tracing.stop(tracer)
        # Exports what the batch processor still holds: up to the exporter's timeout when the
        # collector does not answer, so not on the event loop.
        await asyncio.to_thread(made.shutdown)


def _resource() -> Resource:
    """The SDK's resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, ...), named `c360`
    when neither names the service."""
    detected = Resource.create()
    name = str(detected.attributes.get("service.name", ""))
    if name and not name.startswith("unknown_service"):
        return detected
    return detected.merge(Resource({"service.name": "c360"}))


class TracingMiddleware:
    """Pure ASGI middleware, installed only when tracing is on: a server span per HTTP
    request, continuing the caller's `traceparent`; its trace id noted in the request's
    state for the access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = tracing.TRACER
        if scope["type"] != "http" or tracer is None:
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        # Named for c360's routes, as the metrics are; any other path is the caller's text.
        route = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        status: int | None = None

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracer.start_as_current_span(
            f"{scope['method']} {route}",
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": scope["method"], "http.route": route},
            # A failure's message may quote the request: only its type is kept.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            context = span.get_span_context()
            if context.trace_flags.sampled:
                # For the access line: a trace id that leads to exported spans, and no other.
                scope.setdefault("state", {})["trace_id"] = f"{context.trace_id:032x}"
            try:
                await self.app(scope, receive, send_noting_status)
            except Exception as error:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise
            finally:
                span.set_attribute("http.response.status_code", status or 500)
            if (status or 500) >= 500:
                span.set_status(Status(StatusCode.ERROR))
