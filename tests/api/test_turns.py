"""Turns: once a turn of the loop has spent its budget on new requests, a new request waits for
the next turn, and the I/O that completed in between is handed on first."""

from __future__ import annotations

import asyncio

import pytest

from api import turns
from api.turns import Turns


async def _arrival_order(budget: float, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Three requests arrive in one turn, while a request in flight waits on I/O that completes
    in that same turn; the order in which they go on."""
    monkeypatch.setattr(turns, "BUDGET", budget)
    loop = asyncio.get_running_loop()
    taking = Turns()
    order: list[str] = []
    answered = loop.create_future()

    async def in_flight() -> None:
        await answered
        order.append("in flight")

    async def new_request(name: str) -> None:
        await taking.take()
        order.append(name)

    waiting = asyncio.create_task(in_flight())
    await asyncio.sleep(0)  # it waits on its store
    arrived = [asyncio.create_task(new_request(name)) for name in ("r1", "r2", "r3")]
    loop.call_soon(answered.set_result, None)  # its answer comes in with the three
    await asyncio.gather(waiting, *arrived)
    return order


async def test_a_spent_turn_hands_on_completed_io_before_starting_more_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No budget: one new request per turn. r1 opens the turn; r2 and r3 wait. Next turn r2
    # starts and the waiting request goes on before r3, which waits a turn more.
    assert await _arrival_order(0.0, monkeypatch) == ["r1", "r2", "in flight", "r3"]


async def test_within_the_budget_requests_start_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await _arrival_order(3600.0, monkeypatch) == ["r1", "r2", "r3", "in flight"]
