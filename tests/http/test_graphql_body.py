"""A POST body is read as it arrives: in pieces, over the limit, or cut off by the client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette

from api.settings import Settings
from tests.auth import AGENT


async def _pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_body_sent_in_pieces_is_read_whole(client: httpx.AsyncClient) -> None:
    body = orjson.dumps({"query": "{ __typename }"})
    response = await client.post(
        "/graphql",
        content=_pieces(body[:5], body[5:12], body[12:]),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_a_body_in_pieces_over_the_limit_is_413(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # No Content-Length to refuse it by: the count of what arrived does.
    half = b" " * (settings.max_body_bytes // 2 + 1)
    response = await client.post(
        "/graphql",
        content=_pieces(b'{"query": "{ __typename }"', half, half, b"}"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert "over" in response.json()["errors"][0]["message"]


async def test_a_client_that_leaves_mid_body_gets_no_graphql_answer(app: Starlette) -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"query": "{ __type', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            *((name.encode(), value.encode()) for name, value in AGENT.items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("c360.test", 80),
        "app": app,
    }
    await app(scope, receive, send)
    assert messages == []  # it read up to the disconnect, and no further
    assert sent[0]["status"] == 400  # nobody is listening; nothing was executed
    assert sent[1]["body"] == b""
