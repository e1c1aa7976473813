"""The event bus: an ordered, retained log of change events that subscribers can replay.

Redis Streams when Redis is configured: durable, shared by every instance, replayable from
any retained position (pub/sub alone would lose what a disconnected reader missed). An
in-process log with the same interface otherwise. Positions are opaque strings that sort in
publication order; one log carries every customer's events, so each customer's are ordered.
Whatever a failing Redis raises reaches callers as BusUnavailableError (a SourceError): the
relay keeps the events and tries again, a subscription answers SOURCE_UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from sources.errors import SourceUnavailableError
from sources.events.envelope import Event
from sources.events.journal import Journal
from sources.optional_redis import RedisClient, redis_connection
from sources.outage import REDIS_FAILURES, closed_under_redis


@dataclass(frozen=True, slots=True)
class Delivery:
    position: str
    event: Event


class NotRetainedError(LookupError):
    """The position asked for is older than the bus keeps (or was never on it)."""


class BusUnavailableError(SourceUnavailableError):
    """The bus's store did not answer: nothing was published or read, try again later."""

    def __init__(self, detail: str) -> None:
        super().__init__("events", detail)


@contextlib.contextmanager
def _unavailable_on_failure() -> Iterator[None]:
    """Whatever a failing Redis raises, as the one error callers handle."""
    try:
        yield
    except Exception as error:
        if isinstance(error, REDIS_FAILURES) or closed_under_redis(error):
            raise BusUnavailableError(repr(error)) from error
        raise


class EventBus(Protocol):
    async def publish(self, events: Sequence[Event]) -> list[str]: ...

    async def position_of(self, event_id: str) -> str: ...

    async def latest(self) -> str: ...

    async def read(self, after: str, *, count: int, block: float) -> list[Delivery]:
        """Up to `count` deliveries after a position, waiting up to `block` seconds for one.

        Resuming from an event id goes through `position_of`, which refuses what is no longer
        retained; a reader that keeps up always reads from a position it was just given.
        """
        ...

    async def close(self) -> None: ...


# The longest a blocking read may wait, plus a margin for the answer itself.
READ_TIMEOUT = 35.0


def _event_bytes(event: Event) -> bytes:
    return orjson.dumps(event.to_json())


def _event(data: bytes) -> Event:
    return Event.from_json(orjson.loads(data))


class InProcessBus:
    """The bus of a single instance: a bounded log in memory, retained by length and age.

    With a `journal` (`sources.events.journal`; `c360 serve` keeps it in the data directory),
    what it retains outlives a restart, as Redis's stream does, so `after` resumes across a
    restart. Positions are this process's own; subscribers resume by event id.
    """

    def __init__(
        self, *, max_length: int, retention_seconds: float, journal: Path | None = None
    ) -> None:
        self._log: deque[tuple[int, float, Event]] = deque()
        self._positions: dict[str, int] = {}
        self._next = 1
        self._max_length = max_length
        self._retention = retention_seconds
        self._changed = asyncio.Condition()
        self._journal: Journal | None = None
        if journal is not None:
            self._journal = Journal(
                journal, max_length=max_length, retention_seconds=retention_seconds
            )
            for at, event in self._journal.restore():
                self._append(event, at)

    def _append(self, event: Event, at: float) -> int:
        number = self._next
        self._next += 1
        self._log.append((number, at, event))
        self._positions[event.id] = number
        return number

    def _trim(self) -> None:
        horizon = time.time() - self._retention
        while self._log and (len(self._log) > self._max_length or self._log[0][1] < horizon):
            _, _, event = self._log.popleft()
            self._positions.pop(event.id, None)

    async def publish(self, events: Sequence[Event]) -> list[str]:
        positions = []
        at = time.time()
        for event in events:
            positions.append(f"{self._append(event, at):020d}")
        if self._journal is not None:
            self._journal.append(at, events)
        self._trim()
        async with self._changed:
            self._changed.notify_all()
        return positions

    async def position_of(self, event_id: str) -> str:
        self._trim()
        number = self._positions.get(event_id)
        if number is None:
            raise NotRetainedError(event_id)
        return f"{number:020d}"

    async def latest(self) -> str:
        return f"{self._next - 1:020d}"

    async def read(self, after: str, *, count: int, block: float) -> list[Delivery]:
        start = int(after)

        def ready() -> bool:
            return bool(self._log) and self._log[-1][0] > start

        if not ready() and block > 0:
            async with self._changed:
                try:
                    # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
                    # lands as the wait ends, and the hub reading here would never stop.
                    async with asyncio.timeout(block):
                        await self._changed.wait_for(ready)
                except TimeoutError:
                    return []
        found = []
        for number, _, event in self._log:
            if number > start:
                found.append(Delivery(f"{number:020d}", event))
                if len(found) == count:
                    break
        return found

    async def close(self) -> None:
        self._log.clear()


class RedisStreamBus:
    """Redis Streams: one stream, trimmed by length and age, with an event-id index.

    On a Redis Cluster the stream is one key, so one slot: one master holds the whole log (its
    replica takes over when it dies), which keeps one order across every customer's events
    and a position a subscriber can resume from. Each publish's XADDs and XTRIM touch that
    key only, so they stay one transaction; the index entries spread over the cluster.
    """

    def __init__(
        self, url: str, *, namespace: str, max_length: int, retention_seconds: float
    ) -> None:
        self._redis: RedisClient = redis_connection(url)
        # Blocking reads hold a connection: they get a client of their own, whose socket
        # timeout outlasts the longest block (redis-py's default of 5 s would cut them off).
        self._reader: RedisClient = redis_connection(url, socket_timeout=READ_TIMEOUT)
        self._stream = f"{namespace}:events"
        self._index = f"{namespace}:event-position:"
        self._max_length = max_length
        self._retention = retention_seconds

    async def publish(self, events: Sequence[Event]) -> list[str]:
        with _unavailable_on_failure():
            return await self._publish(events)

    async def _publish(self, events: Sequence[Event]) -> list[str]:
        horizon = int((time.time() - self._retention) * 1000)
        async with self._redis.pipeline(transaction=True) as pipe:
            for event in events:
                pipe.xadd(
                    self._stream,
                    {"event": _event_bytes(event)},
                    maxlen=self._max_length,
                    approximate=True,
                )
            pipe.xtrim(self._stream, minid=f"{horizon}-0", approximate=True)
            results = await pipe.execute()
        positions = [_text(r) for r in results[: len(events)]]
        async with self._redis.pipeline(transaction=False) as pipe:
            for event, position in zip(events, positions, strict=True):
                pipe.set(self._index + event.id, position, ex=max(int(self._retention), 1))
            await pipe.execute()
        return positions

    async def _first(self) -> str | None:
        entries: Any = await self._redis.xrange(self._stream, count=1)
        return _text(entries[0][0]) if entries else None

    async def position_of(self, event_id: str) -> str:
        with _unavailable_on_failure():
            position: Any = await self._redis.get(self._index + event_id)
            if position is None:
                raise NotRetainedError(event_id)
            text = _text(position)
            first = await self._first()
        if first is None or position_key(text) < position_key(first):
            raise NotRetainedError(event_id)
        return text

    async def latest(self) -> str:
        with _unavailable_on_failure():
            entries: Any = await self._redis.xrevrange(self._stream, count=1)
        return _text(entries[0][0]) if entries else "0-0"

    async def read(self, after: str, *, count: int, block: float) -> list[Delivery]:
        block = min(block, READ_TIMEOUT - 5)
        with _unavailable_on_failure():
            reply: Any = await self._reader.xread(
                {self._stream: after}, count=count, block=int(block * 1000) if block > 0 else None
            )
        deliveries = []
        for _, entries in reply or []:
            for position, fields in entries:
                deliveries.append(Delivery(_text(position), _event(fields[b"event"])))
        return deliveries

    async def close(self) -> None:
        await self._redis.aclose()
        await self._reader.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def position_key(position: str) -> tuple[int, int]:
    """Positions sort as (number, sequence): "00000042" and Redis's "1700000000000-3" alike."""
    millis, _, sequence = position.partition("-")
    return int(millis), int(sequence or 0)
