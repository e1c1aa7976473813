"""The ASGI application factory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.connections import open_connections
from api.context import create_context
from api.graphql_http import GraphQLHTTP
from api.health import healthz, readyz
from api.metrics import Metrics, MetricsMiddleware
from api.settings import Environment, Settings
from resolvers.schema import create_schema

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    """The c360 app for resolved settings (every store's URL known; see `api.embedded`)."""
    endpoint = GraphQLHTTP(create_schema(), graphiql=settings.env is Environment.DEVELOPMENT)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_connections(settings) as connections:
            app.state.connections = connections
            metrics.watch_round_trips(connections.round_trips)
            if connections.cache is not None:
                metrics.watch_cache(connections.cache)
            yield

    async def graphql(request: Request) -> Response:
        return await endpoint(request, create_context(request.app.state.connections))

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics.endpoint, methods=["GET"]),
        ],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        lifespan=lifespan,
    )
    app.state.endpoint = endpoint
    return app


def app_from_environment() -> Starlette:
    """The app for `uvicorn --factory`: settings from the environment `c360 serve` prepared."""
    return create_app(Settings())
