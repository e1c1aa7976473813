"""The test services: which real servers this run uses, and whether they are mandatory.

C360_TEST_POSTGRES_URL, C360_TEST_REDIS_URL and C360_TEST_MONGO_URL name real servers; with
C360_TEST_REQUIRE_SERVICES=1 a missing or unreachable one fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get("C360_TEST_POSTGRES_URL") or None
REDIS_URL = os.environ.get("C360_TEST_REDIS_URL") or None
MONGO_URL = os.environ.get("C360_TEST_MONGO_URL") or None
REQUIRED = os.environ.get("C360_TEST_REQUIRE_SERVICES") == "1"


def unavailable(service: str, reason: str) -> None:
    """Skip, or fail when services are required (CI), because `service` cannot be used."""
    message = f"{service}: {reason}"
    if REQUIRED:
        pytest.fail(f"{message} (C360_TEST_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def own_redis(port: int, keep_in: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis server of the test's own on `port` (never the shared one), killed on exit.

    Nothing is kept on disk, unless `keep_in` names a directory: then every write is in its
    append-only file before Redis answers, and a server started again there has it all back.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server", "not on PATH; outage tests run their own Redis")
    persistence = (
        ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(keep_in)]
        if keep_in is not None
        else ["--appendonly", "no"]
    )
    process = subprocess.Popen(
        [binary or "", "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


async def wait_for_redis(url: str, within: float = 10.0) -> None:
    """Return once the Redis at `url` answers PING (and has loaded its data)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if await client.ping():
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{url} did not answer within {within} s")
    finally:
        await client.aclose()


@dataclass
class SilentServer:
    """A TCP server that accepts connections and never answers: a store that hangs."""

    port: int
    connections: int = 0


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[SilentServer]:
    """A SilentServer on a free local port, counting the connections made to it."""
    silent = SilentServer(port=0)

    async def accept_and_say_nothing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        silent.connections += 1
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    silent.port = server.sockets[0].getsockname()[1]
    try:
        yield silent
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class StallingProxy:
    """A TCP proxy to a real server that stops answering a connection once it sent `marker`."""

    port: int
    marker: bytes
    # Connections that sent the marker: the server did their work, its replies are kept back.
    stalled: int = 0


@contextlib.asynccontextmanager
async def stalling_proxy(host: str, port: int, marker: bytes) -> AsyncIterator[StallingProxy]:
    """A StallingProxy to `host`:`port` on a free local port: a store that did the work asked
    but has not answered yet (a SilentServer does nothing at all)."""
    proxy = StallingProxy(port=0, marker=marker)
    pumps: set[asyncio.Task[None]] = set()

    async def relay(client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        server, to_server = await asyncio.open_connection(host, port)
        stalled = asyncio.Event()

        async def requests() -> None:
            sent = b""
            while chunk := await client.read(65536):
                sent = (sent + chunk)[-len(marker) - 65536 :]
                if marker in sent and not stalled.is_set():
                    stalled.set()
                    proxy.stalled += 1
                to_server.write(chunk)
                await to_server.drain()

        async def replies() -> None:
            while chunk := await server.read(65536):
                if stalled.is_set():
                    await asyncio.Event().wait()  # kept back until the proxy closes
                to_client.write(chunk)
                await to_client.drain()

        both = [asyncio.create_task(requests()), asyncio.create_task(replies())]
        pumps.update(both)
        try:
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in both:
                pump.cancel()
            await asyncio.gather(*both, return_exceptions=True)
            pumps.difference_update(both)
            to_server.close()
            to_client.close()

    listener = await asyncio.start_server(relay, "127.0.0.1", 0)
    proxy.port = listener.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        listener.close()
        for pump in list(pumps):
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await listener.wait_closed()
