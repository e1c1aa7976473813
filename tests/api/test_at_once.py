"""A coroutine run up to its first wait, and the rest awaited under a deadline."""

from __future__ import annotations

import asyncio

import pytest

from api.at_once import Done, started


async def _answer(waits: int) -> str:
    for _ in range(waits):
        await asyncio.sleep(0)
    return f"after {waits}"


async def test_a_coroutine_that_never_waits_is_done_at_once() -> None:
    step = started(_answer(0))
    assert isinstance(step, Done) and step.value == "after 0"


async def test_a_coroutine_that_waits_is_finished_by_awaiting_the_rest() -> None:
    step = started(_answer(3))
    assert not isinstance(step, Done)
    assert await step == "after 3"


async def test_a_deadline_around_the_rest_reaches_the_coroutine() -> None:
    stopped = asyncio.Event()
    started_at = asyncio.get_running_loop().time()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    step = started(slow())
    assert not isinstance(step, Done)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout_at(started_at + 0.01):
            await step
    assert stopped.is_set()


async def test_an_error_before_the_first_wait_is_raised_by_started() -> None:
    async def broken() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        started(broken())


async def test_an_awaitable_that_is_not_a_coroutine_is_left_to_be_awaited() -> None:
    future = asyncio.get_running_loop().create_future()
    assert started(future) is future
    future.set_result(1)
    assert await future == 1
