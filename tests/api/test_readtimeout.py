"""The headers' read deadline (api.readtimeout) on a pipelined connection, over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from api import readtimeout
from sources.net import free_port
from tests.waits import until

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


async def _echo_body(scope: Scope, receive: Receive, send: Send) -> None:
    """An app reading the whole body, then answering it back."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"".join(chunks)})


async def _answer(app: readtimeout.BodyReadTimeoutMiddleware, receive: Receive) -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "http"}, receive, send)
    return sent


async def test_a_body_already_arrived_is_read_without_a_deadline_and_a_late_one_with_it() -> None:
    app = readtimeout.BodyReadTimeoutMiddleware(_echo_body, timeout=0.2)
    parts = [b"one ", b"two"]
    stopped: list[BaseException] = []
    arrived = asyncio.Event()

    async def receive() -> Any:
        # The first part is at hand; the second waits, as a slow client's would.
        if len(parts) == 1:
            try:
                await arrived.wait()
            except BaseException as error:
                stopped.append(error)
                raise
        part = parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    asyncio.get_running_loop().call_later(0.05, arrived.set)
    sent = await _answer(app, receive)
    assert sent[1]["body"] == b"one two" and stopped == []

    parts[:] = [b"one ", b"never"]
    arrived.clear()
    sent = await _answer(app, receive)
    assert sent[0]["status"] == 408
    # The waiting read was cancelled at the deadline, inside the client's receive.
    assert len(stopped) == 1 and isinstance(stopped[0], asyncio.CancelledError)
