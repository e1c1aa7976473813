"""GraphQL subscriptions over WebSocket (the graphql-transport-ws protocol).

Strawberry's protocol handler does the framing, the connection_init timeout and the
ping/pong keep-alive; c360 gives it the schema and a context per connection. Loaders are not
per connection: each subscription sets fresh ones for every event it delivers.

The same rules as HTTP apply. The handshake's Origin must be this server's own or one of
C360_CORS_ORIGINS. `connection_init` must carry a credential (see `api.auth`): a missing or bad
one closes the socket with 4403 before any subscription runs, and the socket is closed when the
credential expires. A `connection_init` the rate limits refuse closes it with 4429 "rate
limited, retry after N s" instead, so a client can tell waiting from a bad credential. Each
subscribe passes `WebSocketAdmission` (validation, limits, rate limits, trusted documents)
before it runs; `api.subscriptions` bounds the subscriptions of a socket and of a principal.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
import weakref
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
)
from strawberry.types.unset import UnsetType

from api.connections import Connections
from api.context import create_context
from api.graphql_http import GraphQLRequest, resolve_query, select_operation
from api.guard import CallerRefusedError, Guard
from api.settings import Settings
from api.subscriptions import TOO_MANY
from resolvers.context import Context

log = logging.getLogger(__name__)
# graphql-transport-ws's "Forbidden": a refused origin or credential, or one that expired on an
# open socket (the close reason says which).
FORBIDDEN = 4403


class SocketRefusedError(Exception):
    """A `connection_init` refused with a close code of its own (not Strawberry's 4403)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class TransportHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's graphql-transport-ws handler, with c360's close codes."""

    # Every socket's handler, while it lives: a stopping process waits for their operations
    # to send their last messages before its sockets close (`api.stopping`).
    running: ClassVar[weakref.WeakSet[TransportHandler]] = weakref.WeakSet()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        TransportHandler.running.add(self)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        """Strawberry's handshake; a `SocketRefusedError` closes with its own code."""
        try:
            await super().handle_connection_init(message)
        except SocketRefusedError as refused:
            await self.websocket.close(code=refused.code, reason=refused.reason)

    async def send_message(self, message: Message) -> None:
        """Send, unless c360 closed the socket (a limit, an expired credential): other
        operations still running on it end quietly instead of failing to send."""
        websocket = self.context.websocket
        if websocket is not None and websocket.application_state is WebSocketState.DISCONNECTED:
            return
        await super().send_message(message)


class GraphQLWebSocket(GraphQL[Context, None]):
    """The WebSocket side of /graphql."""

    graphql_transport_ws_handler_class = TransportHandler

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
        self.leeway = dt.timedelta(seconds=settings.auth_jwt_leeway_seconds)
        # Per open socket (by its scope), the task that closes it when its credential expires.
        self._expiries: dict[int, asyncio.Task[None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not self._origin_allowed(scope):
            # Closing before accepting answers the handshake with 403.
            await send(
                {"type": "websocket.close", "code": FORBIDDEN, "reason": "origin not allowed"}
            )
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            expiry = self._expiries.pop(id(scope), None)
            if expiry is not None:
                expiry.cancel()

    def _origin_allowed(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin")
        if origin is None:
            return True  # not a browser: origins are a browser's protection
        host = headers.get(b"host", b"").decode()
        text = origin.decode()
        return text.split("://", 1)[-1] == host or text in self.allowed_origins

    async def get_context(self, request: Request | WebSocket, response: Any = None) -> Context:
        """One context per socket; its principal is set by `connection_init`."""
        connections: Connections = request.app.state.connections
        context = create_context(connections, request_id=uuid.uuid4().hex)
        context.websocket = request if isinstance(request, WebSocket) else None
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate `connection_init`: refused (4403) without a valid credential, and
        (4429) when the rate limits refuse it."""
        websocket = context.websocket
        assert websocket is not None
        guard: Guard = websocket.app.state.guard
        try:
            principal = await guard.identify(
                websocket.client.host if websocket.client else None,
                lambda: guard.authenticator.from_connection_params(context.connection_params),
            )
        except CallerRefusedError as refused:
            log.info("websocket refused: %s", refused)
            if refused.status == 429:
                retry_after = refused.headers.get("retry-after", "1")
                raise SocketRefusedError(
                    TOO_MANY, f"rate limited, retry after {retry_after} s"
                ) from refused
            raise ConnectionRejectionError from refused
        if principal.anonymous:
            raise ConnectionRejectionError
        context.principal = principal
        if principal.expires_at is not None:
            # Accepted until the same leeway past expiry as HTTP allows.
            closing = _close_at(websocket, principal.expires_at + self.leeway)
            self._expiries[id(websocket.scope)] = asyncio.create_task(closing)
        return await super().on_ws_connect(context)


def operations_running() -> int:
    """How many WebSocket operations this process runs (each sends until it completes)."""
    return sum(len(handler.operations) for handler in TransportHandler.running)


async def _close_at(websocket: WebSocket, when: dt.datetime) -> None:
    await asyncio.sleep(max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0))
    with contextlib.suppress(Exception):  # closed by the client meanwhile
        await websocket.close(code=FORBIDDEN, reason="credential expired")


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
    try:
        await guard.count(principal)
    except CallerRefusedError as refused:
        return [GraphQLError(str(refused), extensions={"code": refused.code})]
    query = execution.query or ""
    try:
        await resolve_query(GraphQLRequest(query, None, None, None), guard, principal)
    except GraphQLError as error:
        return [error]
    document = execution.graphql_document
    try:
        operation = select_operation(document, execution.operation_name)
    except GraphQLError as error:
        return [error]
    refusal = guard.admission.check(query, document, operation, principal) or (
        guard.admission.admit(query, document, operation, principal, execution.variables)
    )
    return refusal.errors if refusal else []
