"""Turns: once a turn of the loop has spent its budget on new requests, a new request waits for
the next turn, and the I/O that completed in between is handed on first; on asyncio's loop and
on uvloop, which `c360 serve` runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvloop

from api import turns
from api.turns import Turns

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


async def _arrival_order() -> list[str]:
    """Three requests arrive in one turn, while a request in flight waits on I/O that completes
    in that same turn; the order in which they go on."""
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


@pytest.mark.parametrize(
    ("budget", "max_yields", "order"),
    [
        # No budget: one new request per turn. r1 opens the turn; r2 and r3 wait. Next turn r2
        # starts and the waiting request goes on before r3, which waits a turn more.
        (0.0, 8, ["r1", "r2", "in flight", "r3"]),
        # Within the budget, requests start at once.
        (3600.0, 8, ["r1", "r2", "r3", "in flight"]),
        # A request waits a bounded number of turns: after one, r3 starts whatever the budget.
        (0.0, 1, ["r1", "r2", "r3", "in flight"]),
    ],
    ids=["spent budget", "ample budget", "bounded waits"],
)
@pytest.mark.parametrize("loop", LOOPS)
def test_a_spent_turn_hands_on_completed_io_before_starting_more_requests(
    loop: str, budget: float, max_yields: int, order: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(turns, "BUDGET", budget)
    monkeypatch.setattr(turns, "MAX_YIELDS", max_yields)
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        assert runner.run(_arrival_order()) == order
