"""Fan-out of the bus to this instance's subscribers, with replay from an event id.

One reader per instance follows the bus and hands each event to the bounded queue of every
subscription for its customer, however many subscribers there are. A subscription that
resumes `after` an event first replays the retained events after it, then continues live:
it is registered before the replay starts and skips what the replay already gave, so there
is no gap and no duplicate. A subscriber whose queue fills is closed rather than allowed to
grow memory; it can resume with `after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sources import tracing
from sources.events.bus import Delivery, EventBus, position_key
from sources.outage import Outage, stopping

log = logging.getLogger(__name__)

READ_BATCH = 500


class SlowConsumerError(Exception):
    """The subscriber did not keep up: its queue filled and it was closed."""


class ShuttingDownError(Exception):
    """This instance is stopping: the subscription ends here, to be resumed elsewhere after
    `resume_after` (None only when the hub had seen no event since it started)."""

    def __init__(self, subject: str, resume_after: str | None) -> None:
        super().__init__(subject)
        self.resume_after = resume_after


# Put into a waiting subscription's queue to wake it when the hub ends its subscriptions.
_WAKE: Any = object()


@dataclass(eq=False)
class Subscription:
    subject: str
    wants: Callable[[Delivery], bool]
    queue: asyncio.Queue[Delivery]
    overflowed: bool = False
    ended: bool = False
    # The event to resume after: the last one delivered, else the last one the hub had read
    # when this subscription went live (or its `after`). Whatever it was offered and did not
    # deliver follows it.
    resume_after: str | None = None
    seen: deque[str] = field(default_factory=lambda: deque(maxlen=1024))

    def offer(self, delivery: Delivery) -> None:
        if self.overflowed or not self.wants(delivery):
            return
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.overflowed = True


class Hub:
    """This instance's subscriptions to the bus."""

    def __init__(self, bus: EventBus, *, queue_size: int) -> None:
        self.bus = bus
        self._queue_size = queue_size
        self._by_subject: dict[str, set[Subscription]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.position = "0"
        self.last_event_id: str | None = None  # the event at `position`, once one is read
        self._started = asyncio.Event()
        self._ending = False

    async def start(self) -> None:
        """Follow the bus from its current end."""
        self.position = await self.bus.latest()
        self._reader = asyncio.create_task(self._follow(), name="event-hub")
        self._started.set()

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _follow(self) -> None:
        outage = Outage(
            "event hub: the bus", log, meanwhile="subscribers get the events once it is back"
        )
        while True:
            try:
                deliveries = await self.bus.read(self.position, count=READ_BATCH, block=5.0)
            except Exception as error:
                if stopping():
                    raise asyncio.CancelledError from error
                outage.failed(error)
                await asyncio.sleep(1.0)
                continue
            if stopping():
                # redis-py, reconnecting after an outage, can swallow a cancellation whole
                # and go on reading: stop after the read then (at most one `block` late).
                raise asyncio.CancelledError
            outage.succeeded()
            started = tracing.now()
            offered = 0
            for delivery in deliveries:
                for subscription in tuple(self._by_subject.get(delivery.event.subject, ())):
                    subscription.offer(delivery)
                    offered += 1
                self.position = delivery.position
                self.last_event_id = delivery.event.id
            if offered:
                tracing.record(
                    "hub.deliver",
                    started,
                    {tracing.EVENTS: len(deliveries), tracing.SUBSCRIPTIONS: offered},
                )

    def end_subscriptions(self) -> None:
        """End every subscription with ShuttingDownError (and refuse new ones): the instance is
        stopping, and its subscribers are to resume on another, after the last event each
        received. Events queued for them and not yet delivered are not lost: they follow
        that event."""
        self._ending = True
        for subscriptions in self._by_subject.values():
            for subscription in subscriptions:
                subscription.ended = True
                with contextlib.suppress(asyncio.QueueFull):  # a full queue wakes it anyway
                    subscription.queue.put_nowait(_WAKE)

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._by_subject.values())

    def subscriptions_to(self, subject: str) -> int:
        """How many subscriptions to `subject` this hub delivers to now."""
        return len(self._by_subject.get(subject, ()))

    @contextlib.asynccontextmanager
    async def subscribe(
        self, subject: str, wants: Callable[[Delivery], bool], *, after_event: str | None = None
    ) -> AsyncIterator[AsyncIterator[Delivery]]:
        """The deliveries for `subject` that `wants` accepts, from now or after an event.

        Raises NotRetainedError (from the bus) when `after_event` is no longer retained.
        """
        if self._ending:
            raise ShuttingDownError(subject, after_event or self.last_event_id)
        subscription = Subscription(subject, wants, asyncio.Queue(self._queue_size))
        subscription.resume_after = after_event or self.last_event_id
        self._by_subject.setdefault(subject, set()).add(subscription)
        live_from = self.position
        try:
            replay: list[Delivery] = []
            if after_event is not None:
                position = await self.bus.position_of(after_event)
                while position_key(position) < position_key(live_from):
                    batch = await self.bus.read(position, count=READ_BATCH, block=0)
                    if not batch:
                        break
                    for delivery in batch:
                        if position_key(delivery.position) > position_key(live_from):
                            break
                        if delivery.event.subject == subject and wants(delivery):
                            replay.append(delivery)
                        position = delivery.position
                    else:
                        continue
                    break
            yield self._deliveries(subscription, replay)
        finally:
            members = self._by_subject.get(subject)
            if members is not None:
                members.discard(subscription)
                if not members:
                    del self._by_subject[subject]

    async def _deliveries(
        self, subscription: Subscription, replay: list[Delivery]
    ) -> AsyncIterator[Delivery]:
        last: tuple[int, int] | None = None
        for delivery in replay:
            if subscription.ended:
                raise ShuttingDownError(subscription.subject, subscription.resume_after)
            subscription.seen.append(delivery.event.id)
            subscription.resume_after = delivery.event.id
            last = position_key(delivery.position)
            yield delivery
        while True:
            if subscription.ended:
                raise ShuttingDownError(subscription.subject, subscription.resume_after)
            if subscription.overflowed:
                raise SlowConsumerError(subscription.subject)
            delivery = await subscription.queue.get()
            if delivery is _WAKE:
                continue
            key = position_key(delivery.position)
            if last is not None and key <= last:
                continue  # already replayed
            if delivery.event.id in subscription.seen:
                continue  # at-least-once delivery: the same event published twice
            subscription.seen.append(delivery.event.id)
            subscription.resume_after = delivery.event.id
            last = key
            yield delivery
