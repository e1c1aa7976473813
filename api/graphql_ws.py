"""GraphQL subscriptions over WebSocket (the graphql-transport-ws protocol).

Strawberry's protocol handler does the framing, the connection_init timeout and the
ping/pong keep-alive; c360 gives it the schema and a context per connection. Loaders are not
per connection: each subscription sets fresh ones for every event it delivers.

The same rules as HTTP apply. The handshake's Origin must be this server's own or one of
C360_CORS_ORIGINS. `connection_init` must carry a credential (see `api.auth`): a missing or bad
one closes the socket with 4403 before any subscription runs, and the socket is closed when the
credential expires. Each subscribe passes `WebSocketAdmission` (validation, limits, rate
limits, trusted documents) before it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from api.connections import Connections
from api.context import Context, create_context
from api.graphql_http import GraphQLRequest, resolve_query, select_operation
from api.guard import Guard
from api.principal import AuthenticationError
from api.settings import Settings

log = logging.getLogger(__name__)
# Close code for a credential that expired on an open socket (4403 is graphql-transport-ws's
# "Forbidden"; the reason says why).
EXPIRED = 4403


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
        self.allowed_origins = frozenset(settings.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not self._origin_allowed(scope):
            # Closing before accepting answers the handshake with 403.
            await send({"type": "websocket.close", "code": 4403, "reason": "origin not allowed"})
            return
        await super().__call__(scope, receive, send)

    def _origin_allowed(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin")
        if origin is None:
            return True  # not a browser: origins are a browser's protection
        host = headers.get(b"host", b"").decode()
        text = origin.decode()
        return text.split("://", 1)[-1] == host or text in self.allowed_origins

    async def get_context(self, request: Request | WebSocket, response: Any = None) -> Context:
        connections: Connections = request.app.state.connections
        context = create_context(connections, request_id=uuid.uuid4().hex)
        context.websocket = request if isinstance(request, WebSocket) else None
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        websocket = context.websocket
        assert websocket is not None
        guard: Guard = websocket.app.state.guard
        try:
            principal = await guard.authenticator.from_connection_params(context.connection_params)
        except AuthenticationError as error:
            log.info("websocket refused: %s", error)
            raise ConnectionRejectionError from error
        if principal.anonymous:
            raise ConnectionRejectionError
        context.principal = principal
        if principal.expires_at is not None:
            _close_when_expired(websocket, principal.expires_at)
        return await super().on_ws_connect(context)


def _close_when_expired(websocket: WebSocket, expires_at: dt.datetime) -> None:
    delay = (expires_at - dt.datetime.now(dt.UTC)).total_seconds()

    async def close() -> None:
        await asyncio.sleep(max(delay, 0))
        with contextlib.suppress(Exception):  # already closed by the client
            await websocket.close(code=EXPIRED, reason="credential expired")

    task = asyncio.create_task(close())
    _expiry_tasks.add(task)
    task.add_done_callback(_expiry_tasks.discard)


_expiry_tasks: set[asyncio.Task[None]] = set()


class WebSocketAdmission(SchemaExtension):
    """The HTTP endpoint's pre-execution checks, for operations sent over a WebSocket."""

    async def on_validate(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        if isinstance(context, Context) and context.websocket is not None:
            execution.pre_execution_errors = await _admit(execution, context)
        yield


async def _admit(execution: Any, context: Context) -> list[GraphQLError]:
    websocket = context.websocket
    assert websocket is not None
    guard: Guard = websocket.app.state.guard
    principal = context.principal
    decision = await guard.limiter.hit(
        principal=f"{principal.kind}:{principal.name}",
        ip=websocket.client.host if websocket.client else None,
    )
    if not decision.allowed:
        return [
            GraphQLError(
                f"Too many requests; retry in {decision.retry_after} s.",
                extensions={"code": "RATE_LIMITED", "retryAfter": decision.retry_after},
            )
        ]
    query = execution.query or ""
    try:
        await resolve_query(GraphQLRequest(query, None, None, None), guard, principal)
    except GraphQLError as error:
        return [error]
    document = execution.graphql_document
    errors = guard.admission.validate(query, document, principal)
    if errors:
        return errors
    try:
        operation = select_operation(document, execution.operation_name)
    except GraphQLError as error:
        return [error]
    refusal = guard.admission.admit(document, operation, principal, execution.variables)
    return refusal.errors if refusal else []
