"""Slow clients: a deadline on reading a request's headers, and then its body (408, then close).

A client that sends its request a byte at a time holds a connection, and the memory of a
half-read request, for as long as it likes; enough of them exhaust the server. Headers are read
by uvicorn, which has no deadline of its own for them: `ReadTimeoutProtocol` is its httptools
protocol with one. The body is read by the app as it asks for it: `BodyReadTimeoutMiddleware`
bounds the whole read. Both allow `request_read_timeout` seconds and answer 408 when it passes.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.at_once import Done, started
from api.settings import Settings


def _timeout_body(part: str, timeout: float) -> bytes:
    message = f"The request's {part} did not arrive within {timeout:g} s."
    return orjson.dumps({"errors": [{"message": message, "extensions": {"code": "TIMEOUT"}}]})


class _BodyReadTimeoutError(Exception):
    """The client did not send the rest of its body in time."""


class BodyReadTimeoutMiddleware:
    """Pure ASGI middleware: the whole body must arrive within `timeout` s of the first read
    that has to wait for it."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        body_read = False
        responded = False

        async def receive_in_time() -> Message:
            nonlocal deadline, body_read
            if body_read:
                # Past the body the app only listens for a disconnect, which may take forever.
                return await receive()
            # A small POST is whole in uvicorn's buffer before the app asks for it.
            step = started(receive())
            if isinstance(step, Done):
                message = step.value
            else:
                if deadline is None:
                    # The clock starts at the first read that waits: those before it, answered
                    # from the buffer at once, took no time worth counting.
                    deadline = asyncio.get_running_loop().time() + self.timeout
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await step
                except TimeoutError:
                    raise _BodyReadTimeoutError from None
            body_read = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_noting_start(message: Message) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_noting_start)
        except _BodyReadTimeoutError:
            if responded:
                raise
            body = _timeout_body("body", self.timeout)
            await send(
                {
                    "type": "http.response.start",
                    "status": 408,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        # The rest of the body may still be on its way: this connection is done.
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})


@functools.cache
def _header_timeout() -> float:
    # uvicorn hands a protocol only its own Config, and a worker process gets a pickled copy of
    # that: the setting reaches every worker the way the app's settings do, by the environment.
    return Settings().request_read_timeout


class ReadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A request on a kept-alive connection: the first byte starts its clock (uvicorn's
        # keep-alive timeout bounds the wait for that byte).
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._headers_due is None:
            self._headers_due = self.loop.call_later(_header_timeout(), self._headers_too_slow)

    def _disarm(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_too_slow(self) -> None:
        self._headers_due = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier (pipelined) request is still being answered: a 408 written now would
            # reach the client in its answer's place. Closing cuts that answer short, as the
            # client's late headers leave no better choice on this connection.
            self.transport.close()
            return
        body = _timeout_body("headers", _header_timeout())
        head = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
