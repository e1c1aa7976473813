"""Background loops stop when told, even when the stop lands as the wait it interrupts ends.

Python 3.11's `asyncio.wait_for` returns the result of a wait that ended in the same loop
iteration as its task's cancellation, and drops the cancellation: a loop built on it went
round again, and its `stop()` waited forever (a server that never finished shutting down).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.connections import Connections
from sources.events.bus import InProcessBus
from sources.events.envelope import new_event
from sources.events.outbox import Relay
from tests.waits import relay_idle, until

# Loop iterations between the wait ending and the cancellation: the window is one of them.
LAGS = range(6)


async def _iterations(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


@pytest.mark.parametrize("lag", LAGS)
async def test_a_bus_read_cancelled_as_an_event_arrives_ends(lag: int) -> None:
    bus = InProcessBus(max_length=10, retention_seconds=60)
    reader = asyncio.create_task(bus.read(await bus.latest(), count=10, block=60))
    await _iterations(3)  # the reader runs up to its wait
    await bus.publish([new_event("customer.contact_changed", 1, {"email": "a@example.com"})])
    await _iterations(lag)
    accepted = reader.cancel()  # False once the read has returned: nothing to cancel
    async with asyncio.timeout(10):
        await asyncio.gather(reader, return_exceptions=True)
    # A loop around the read (the hub's) ends only if an accepted cancellation is not dropped.
    assert reader.cancelled() == accepted


async def test_the_relay_stops_when_told_as_a_write_wakes_it(
    own_sqlite: AsyncEngine, connections: Connections
) -> None:
    mongo = connections.mongo[f"c360_test_{uuid.uuid4().hex[:12]}"]
    try:
        for lag in LAGS:
            relay = Relay(
                engine=own_sqlite,
                db=mongo,  # type: ignore[arg-type]
                bus=InProcessBus(max_length=10, retention_seconds=60),
                poll_seconds=60,
            )
            relay.start()
            await until(lambda r=relay: relay_idle(r), "the relay to wait for work", 10)
            relay.wake()
            await _iterations(lag)
            async with asyncio.timeout(10):
                await relay.stop()
    finally:
        await connections.mongo.drop_database(mongo.name)
