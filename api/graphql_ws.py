"""GraphQL subscriptions over WebSocket (the graphql-transport-ws protocol).

Strawberry's protocol handler does the framing, the connection_init timeout and the
ping/pong keep-alive; c360 gives it the schema and a context per connection. Loaders are not
per connection: each subscription sets fresh ones for every event it delivers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from starlette.requests import Request
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from api.connections import Connections
from api.context import Context, create_context
from api.settings import Settings


class GraphQLWebSocket(GraphQL[Context, None]):
    """The WebSocket side of /graphql."""

    def __init__(self, schema: strawberry.Schema, settings: Settings) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            keep_alive=True,
            keep_alive_interval=15,
            connection_init_wait_timeout=dt.timedelta(seconds=settings.websocket_init_timeout),
        )

    async def get_context(self, request: Request | WebSocket, response: Any = None) -> Context:
        connections: Connections = request.app.state.connections
        return create_context(connections)
