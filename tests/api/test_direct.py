"""GraphQL over HTTP reaches its endpoint past Starlette's router; nothing else does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from api.direct import Direct


class Recorded:
    """The endpoint and the app behind, each noting what reached it."""

    def __init__(self) -> None:
        self.endpoint: list[str] = []
        self.behind: list[str] = []

    async def answer(self, request: Request) -> Response:
        self.endpoint.append(f"{request.method} {request.url.path}")
        return Response(b"endpoint")

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.behind.append(f"{scope['type']} {scope.get('method', '')} {scope['path']}".strip())
        if scope["type"] == "http":
            await Response(b"behind")(scope, receive, send)


@pytest.mark.parametrize(
    ("method", "path", "direct"),
    [
        ("POST", "/graphql", True),
        ("GET", "/graphql", True),
        ("HEAD", "/graphql", True),
        ("PUT", "/graphql", False),  # the router's 405
        ("OPTIONS", "/graphql", False),  # a CORS preflight, answered before this, or a 405
        ("POST", "/graphql/", False),
        ("POST", "/events", False),
        ("GET", "/metrics", False),
    ],
)
async def test_only_graphql_requests_go_direct(method: str, path: str, direct: bool) -> None:
    recorded = Recorded()
    app = Direct(recorded.app, path="/graphql", endpoint=recorded.answer)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://c360.test"
    ) as http:
        response = await http.request(method, path)
    assert response.status_code == 200
    assert recorded.endpoint == ([f"{method} {path}"] if direct else [])
    assert recorded.behind == ([] if direct else [f"http {method} {path}"])
    if method != "HEAD":
        assert response.content == (b"endpoint" if direct else b"behind")


async def test_other_methods_on_graphql_still_get_the_routers_405(
    client: httpx.AsyncClient,
) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        response = await client.request(method, "/graphql", json={"query": "{ __typename }"})
        assert response.status_code == 405, method
        assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
        assert response.headers["x-request-id"]  # the metrics middleware still saw it


async def test_head_is_answered_as_get_without_a_body(client: httpx.AsyncClient) -> None:
    get = await client.get("/graphql", params={"query": "{ __typename }"})
    head = await client.head("/graphql", params={"query": "{ __typename }"})
    assert get.status_code == head.status_code == 200
    assert head.content == b""
