"""The ASGI application factory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from opentelemetry.sdk.trace.export import SpanExporter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from strawberry.extensions import MaxTokensLimiter

from api.access import enable_access_log
from api.collector import settle_after_startup
from api.connections import open_connections
from api.direct import Direct
from api.events_http import create_events_endpoint
from api.graphql_http import GraphQLHTTP
from api.graphql_ws import GraphQLWebSocket, WebSocketAdmission
from api.guard import open_guard
from api.health import Readiness, healthz, readyz
from api.ide import ASSETS_PATH, assets
from api.logs import configure as configure_logging
from api.metrics import Metrics, MetricsMiddleware
from api.readtimeout import BodyReadTimeoutMiddleware
from api.settings import Settings
from api.startup import refuse_production_without_auth, refuse_unsafe_production
from api.stopping import subscribers_told_first
from api.tracing import TracingMiddleware, tracing_on, tracing_wanted
from domain.appliers import pipeline
from resolvers.schema import create_schema
from sources.events.registry import SchemaRegistry

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, served: bool = False, span_exporter: SpanExporter | None = None
) -> Starlette:
    """The c360 app for resolved settings (every store's URL known; see `api.embedded`).

    `served`: the app is the process's reason to be (`c360 serve`), so its start-up may tune
    the process's garbage collector (`api.collector`). `span_exporter`: where spans go
    instead of the configured OTLP endpoint (tests)."""
    refuse_unsafe_production(settings)
    registry = SchemaRegistry()
    if settings.access_log:
        enable_access_log()
    # WebSocket operations run through Strawberry: the admission checks join as extensions
    # (the token limit bounds parsing, which comes before them).
    schema = create_schema(
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=settings.limit_tokens),
            WebSocketAdmission,
        ]
    )
    endpoint = GraphQLHTTP(schema, settings)
    metrics = Metrics(settings.metrics_token, shared=settings.metrics_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Outermost: the stores' start and stop (the relay's last pass) are traced too.
        async with tracing_on(settings, span_exporter) as traces:
            app.state.traces = traces  # the tracer provider, None when tracing is off
            async with (
                open_connections(settings) as connections,
                open_guard(settings, schema._schema, connections.engine) as guard,
            ):
                await refuse_production_without_auth(settings, connections.engine)
                app.state.connections = connections
                app.state.guard = guard
                metrics.watch_round_trips(connections.round_trips)
                metrics.watch_hub(connections.hub)
                if connections.cache is not None:
                    metrics.watch_cache(connections.cache)
                if connections.responses is not None:
                    metrics.watch_responses(connections.responses)
                app.state.ingestion = pipeline(
                    connections.changes, registry, grouped=settings.ingest_grouped
                )
                app.state.readiness = Readiness(connections)
                if metrics.shared is not None:
                    metrics.shared.start()
                if served:
                    settle_after_startup(settings.gc_young_threshold)
                with (
                    subscribers_told_first(connections.hub) if served else contextlib.nullcontext()
                ):
                    yield
                app.state.ingestion = None
                await app.state.readiness.close()
                if metrics.shared is not None:
                    await metrics.shared.stop()

    async def graphql(request: Request) -> Response:
        return await endpoint(request, request.app.state.connections, request.app.state.guard)

    middleware = [
        Middleware(MetricsMiddleware, metrics=metrics, access_log=settings.access_log),
        Middleware(BodyReadTimeoutMiddleware, timeout=settings.request_read_timeout),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "X-API-Key",
                    "X-Request-ID",
                    "Idempotency-Key",
                ],
                expose_headers=["X-Request-ID", "Retry-After", "Idempotent-Replayed"],
                max_age=600,
            )
        )
    middleware.append(Middleware(Direct, path="/graphql", endpoint=graphql))
    if tracing_wanted(settings, span_exporter):
        # Outermost: the server span covers what every other middleware does.
        middleware.insert(0, Middleware(TracingMiddleware))

    app = Starlette(
        routes=[
            # Answered by `Direct` before the router; here for the 405 of other methods.
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", GraphQLWebSocket(schema, settings)),
            Route("/events", create_events_endpoint(settings), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics.endpoint, methods=["GET"]),
            Mount(ASSETS_PATH, assets(), name="graphiql"),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.endpoint = endpoint
    app.state.traces = None  # the tracer provider while the lifespan runs, if tracing is on
    # POST /events answers 503 until the lifespan has opened the stores.
    app.state.ingestion = None
    return app


def app_from_environment() -> Starlette:
    """The app for `uvicorn --factory`: settings from the environment `c360 serve` prepared.

    Each worker process formats its own log records (`c360 serve` gives uvicorn no logging
    configuration of its own)."""
    settings = Settings()
    configure_logging(settings.log_format)
    return create_app(settings, served=True)
