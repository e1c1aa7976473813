"""The bus (in-process and Redis Streams) and the hub that fans it out with replay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sources.events.bus import (
    BusUnavailableError,
    EventBus,
    InProcessBus,
    NotRetainedError,
    RedisStreamBus,
)
from sources.events.envelope import Event, new_event
from sources.events.hub import Hub, SlowConsumerError
from sources.net import free_port
from tests.conftest import REDIS_KINDS, redis_url_of
from tests.services import own_redis, wait_for_redis
from tests.waits import until


@pytest.fixture(params=["in-process", *REDIS_KINDS])
async def bus(request: pytest.FixtureRequest, redis_namespace: str) -> AsyncIterator[EventBus]:
    if request.param == "in-process":
        the_bus: EventBus = InProcessBus(max_length=1000, retention_seconds=3600)
    else:
        the_bus = RedisStreamBus(
            redis_url_of(request, request.param),
            namespace=redis_namespace,
            max_length=1000,
            retention_seconds=3600,
        )
    yield the_bus
    await the_bus.close()


def change(subject: str, n: int) -> Event:
    return new_event("customer.contact_changed", subject, {"email": f"e{n}@example.com"})


async def test_published_events_are_read_back_in_order(bus: EventBus) -> None:
    start = await bus.latest()
    events = [change("1", n) for n in range(5)]
    positions = await bus.publish(events)
    read = await bus.read(start, count=10, block=0)
    assert [d.event.id for d in read] == [e.id for e in events]
    assert [d.position for d in read] == positions
    assert read[0].event == events[0]
    assert await bus.position_of(events[2].id) == positions[2]
    assert [d.event.id for d in await bus.read(positions[2], count=10, block=0)] == [
        e.id for e in events[3:]
    ]
    with pytest.raises(NotRetainedError):
        await bus.position_of("never-published")


async def test_a_blocking_read_wakes_on_publish(bus: EventBus) -> None:
    start = await bus.latest()
    reader = asyncio.create_task(bus.read(start, count=10, block=5))
    await asyncio.sleep(0.1)
    event = change("2", 0)
    await bus.publish([event])
    async with asyncio.timeout(5):
        assert [d.event.id for d in await reader] == [event.id]


async def test_the_bus_keeps_a_bounded_history() -> None:
    bus = InProcessBus(max_length=3, retention_seconds=3600)
    events = [change("1", n) for n in range(5)]
    await bus.publish(events)
    with pytest.raises(NotRetainedError):
        await bus.position_of(events[0].id)
    await bus.position_of(events[2].id)


async def test_hub_replays_after_an_event_then_goes_live_without_gap_or_duplicate(
    bus: EventBus,
) -> None:
    hub = Hub(bus, queue_size=100)
    await hub.start()
    try:
        history = [change("7", n) for n in range(3)] + [change("8", 9)]
        await bus.publish(history)
        latest = await bus.latest()
        await until(lambda: hub.position == latest, what="the hub to read the history")
        async with hub.subscribe("7", lambda d: True, after_event=history[0].id) as feed:
            live = change("7", 3)
            await bus.publish([live])
            got = []
            async for delivery in feed:
                got.append(delivery.event.id)
                if len(got) == 3:
                    break
        assert got == [history[1].id, history[2].id, live.id]
        assert hub.subscribers == 0
    finally:
        await hub.stop()


async def test_a_slow_subscriber_is_closed_not_buffered_forever() -> None:
    bus = InProcessBus(max_length=1000, retention_seconds=3600)
    hub = Hub(bus, queue_size=2)
    await hub.start()
    try:
        async with hub.subscribe("9", lambda d: True) as feed:
            await bus.publish([change("9", n) for n in range(5)])
            latest = await bus.latest()
            await until(lambda: hub.position == latest, what="the hub to offer all five")
            with pytest.raises(SlowConsumerError):
                async for _ in feed:
                    pass
    finally:
        await hub.stop()


async def test_the_same_event_published_twice_is_delivered_once() -> None:
    bus = InProcessBus(max_length=1000, retention_seconds=3600)
    hub = Hub(bus, queue_size=10)
    await hub.start()
    try:
        async with hub.subscribe("3", lambda d: True) as feed:
            first, second = change("3", 1), change("3", 2)
            await bus.publish([first, first, second])
            got = []
            async for delivery in feed:
                got.append(delivery.event.id)
                if len(got) == 2:
                    break
        assert got == [first.id, second.id]
    finally:
        await hub.stop()


async def test_every_call_to_a_dead_redis_bus_says_the_bus_is_unavailable() -> None:
    bus = RedisStreamBus(
        f"redis://127.0.0.1:{free_port()}/0",
        namespace="c360test",
        max_length=100,
        retention_seconds=60,
    )
    try:
        calls = [
            bus.publish([change("1", 1)]),
            bus.position_of("some-event"),
            bus.latest(),
            bus.read("0-0", count=10, block=0),
        ]
        for call in calls:
            with pytest.raises(BusUnavailableError) as raised:
                await call
            assert raised.value.code == "SOURCE_UNAVAILABLE"
    finally:
        await bus.close()


async def test_the_hub_rides_out_a_redis_outage_logging_one_line_each_way(
    redis_namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sources.events.hub")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with own_redis(port, keep_in=tmp_path) as redis_process:
        await wait_for_redis(url)
        bus = RedisStreamBus(url, namespace=redis_namespace, max_length=100, retention_seconds=60)
        hub = Hub(bus, queue_size=10)
        await hub.start()
        before = change("5", 0)
        try:
            async with hub.subscribe("5", lambda d: True) as feed:
                # Published once subscribed: the hub delivers from the moment one subscribes,
                # and may already have passed an event published before.
                await bus.publish([before])
                async with asyncio.timeout(10):
                    assert (await anext(feed)).event.id == before.id
                redis_process.kill()
                redis_process.wait()

                def hub_retries() -> int:
                    return sum("still down" in r.getMessage() for r in caplog.records)

                deadline = asyncio.get_running_loop().time() + 10
                while hub_retries() < 2:  # it tried again, and said nothing more at WARNING
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
                # A subscriber resuming now is told to come back, with a code.
                with pytest.raises(BusUnavailableError):
                    async with hub.subscribe("5", lambda d: True, after_event=before.id):
                        pass
                with own_redis(port, keep_in=tmp_path):
                    await wait_for_redis(url)
                    after = change("5", 1)
                    await bus.publish([after])
                    async with asyncio.timeout(10):
                        assert (await anext(feed)).event.id == after.id
                    await hub.stop()  # before this Redis goes too
        finally:
            await hub.stop()
            await bus.close()
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in lines] == ["event hub"] * 2
    assert "down" in lines[0].getMessage() and "back up" in lines[1].getMessage()
    assert not any(r.exc_info for r in lines)
