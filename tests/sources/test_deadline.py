"""The store-call time limit: a busy event loop is not a slow store, a silent store is."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from sources.deadline import TICK, Deadline
from tests.services import silent_server


def hog_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # what a long validation or a big response does to every other task


async def test_a_reply_that_came_while_the_loop_was_busy_is_in_time(redis_url: str) -> None:
    # The bare protocol, so the loop is held up exactly between the request and its reply.
    url = urlsplit(redis_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port or 6379)
    try:
        # With asyncio.timeout(0.1) instead, each of these raises TimeoutError.
        for _ in range(3):
            async with Deadline(0.1):
                writer.write(b"PING\r\n")
                asyncio.get_running_loop().call_soon(hog_the_loop, 0.3)
                assert await reader.readline() == b"+PONG\r\n"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_store_that_does_not_answer_times_out_on_time() -> None:
    async with silent_server() as silent:
        client = Redis.from_url(f"redis://127.0.0.1:{silent.port}/0", socket_timeout=30)
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async with Deadline(0.2):
                    await client.ping()
            assert 0.2 <= time.monotonic() - started < 2.0
        finally:
            await client.aclose()


async def test_time_the_loop_spent_elsewhere_does_not_count() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with Deadline(0.2):
            hog_the_loop(0.3)  # all of it busy: none of it the store's
            await asyncio.sleep(10)
    # The busy stretch held up one tick, which counts at its nominal length only.
    assert time.monotonic() - started >= 0.3 + 0.2 - TICK
