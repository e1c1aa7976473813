"""The ASGI application factory."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from api.connections import open_connections
from api.context import create_context
from api.events_http import create_events_endpoint
from api.graphql_http import GraphQLHTTP
from api.graphql_ws import GraphQLWebSocket
from api.health import healthz, readyz
from api.metrics import Metrics, MetricsMiddleware
from api.settings import Environment, Settings
from resolvers.schema import create_schema
from sources.events.appliers import apply_event
from sources.events.registry import SchemaRegistry

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    """The c360 app for resolved settings (every store's URL known; see `api.embedded`)."""
    schema = create_schema()
    endpoint = GraphQLHTTP(schema, graphiql=settings.env is Environment.DEVELOPMENT)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_connections(settings) as connections:
            app.state.connections = connections
            metrics.watch_round_trips(connections.round_trips)
            if connections.cache is not None:
                metrics.watch_cache(connections.cache)
            app.state.event_applier = functools.partial(apply_event, connections.changes)
            yield
            app.state.event_applier = None

    async def graphql(request: Request) -> Response:
        return await endpoint(request, create_context(request.app.state.connections))

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", GraphQLWebSocket(schema, settings)),
            Route("/events", create_events_endpoint(SchemaRegistry(), settings), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics.endpoint, methods=["GET"]),
        ],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        lifespan=lifespan,
    )
    app.state.endpoint = endpoint
    # POST /events answers 503 until the lifespan has opened the stores.
    app.state.event_applier = None
    return app


def app_from_environment() -> Starlette:
    """The app for `uvicorn --factory`: settings from the environment `c360 serve` prepared."""
    return create_app(Settings())
