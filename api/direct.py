"""GraphQL over HTTP goes straight to its endpoint, past Starlette's router.

Starlette's exception middleware, router and per-route wrappers cost about 16 µs of CPU a
request on the bench machine: one endpoint under two pass-through middlewares took 51 µs a
request inside a Starlette app and 35 µs without it. For `{ __typename }` that was an eighth
of c360's whole cost. The GraphQL endpoint needs none of it: it raises no HTTPException and
answers its own errors. Installed as the innermost middleware, so the middlewares before it
(metrics, the body's read deadline, CORS) see every request as before; other paths, and other
methods on /graphql (the router answers those 405), go the usual way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

# The methods the router gives the endpoint: GET and POST, and HEAD, which Starlette adds to
# every route that has GET.
METHODS = frozenset({"GET", "HEAD", "POST"})


class Direct:
    """Pure ASGI middleware: HTTP requests for `path` with one of `METHODS` are answered by
    `endpoint`, everything else by the app behind."""

    def __init__(
        self, app: ASGIApp, path: str, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] in METHODS:
            response = await self.endpoint(Request(scope, receive, send))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
