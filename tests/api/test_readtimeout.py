"""The headers' read deadline (api.readtimeout) on a pipelined connection, over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from api import readtimeout
from sources.net import free_port
from tests.services import until

READ_TIMEOUT = 0.5
DEADLINE = 30.0


@pytest.fixture
async def held_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """uvicorn with c360's protocol over an app that answers once the event is set."""
    monkeypatch.setenv("C360_REQUEST_READ_TIMEOUT", str(READ_TIMEOUT))
    readtimeout._header_timeout.cache_clear()
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"held"})

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=readtimeout.ReadTimeoutProtocol,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started, "uvicorn serving", DEADLINE)
        yield port, release
    finally:
        release.set()
        server.should_exit = True
        await serving
        readtimeout._header_timeout.cache_clear()


async def test_slow_headers_behind_a_request_being_answered_close_without_a_408(
    held_server: tuple[int, asyncio.Event],
) -> None:
    port, _ = held_server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # The first request is being answered (held) when the second's headers run late: a
        # 408 written now would reach the client in place of the first request's answer.
        writer.write(b"GET /first HTTP/1.1\r\nHost: c360\r\n\r\nGET /second HTTP/1.1\r\n")
        async with asyncio.timeout(DEADLINE):
            answer = await reader.read()
    finally:
        writer.close()
    assert answer == b"", answer
