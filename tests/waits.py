"""Waiting on the state a test needs (a subscription registered, the outbox relayed) rather
than sleeping for a time that is too long on an idle machine and too short on a busy one."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

from sqlalchemy import func, select

from api.connections import Connections
from sources.events.hub import Hub
from sources.events.outbox import Relay
from sources.sql import models
from tests.stalls import awaits

# Long enough for any machine; a test that reaches it has found a bug, not a slow machine.
PATIENCE = 15.0


async def until(holds: Callable[[], object], what: str, patience: float = PATIENCE) -> None:
    """Return once `holds()` (a function or a coroutine function) gives a true value, checked
    every 10 ms; fail naming `what` after `patience` seconds."""
    try:
        async with asyncio.timeout(patience):
            while True:
                answer = holds()
                if await answer if inspect.isawaitable(answer) else answer:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"still waiting after {patience:g} s for {what}") from None


async def subscribed(hub: Hub, subject: int | str, count: int = 1) -> None:
    """Until `count` subscriptions to `subject` are registered with this instance's hub."""
    await until(
        lambda: hub.subscriptions_to(str(subject)) >= count,
        what=f"{count} subscription(s) to customer {subject}",
    )


async def relayed(connections: Connections) -> None:
    """Until every outbox item is published and this instance's hub has read to the bus's
    end: each change made so far is then on the bus and delivered to its subscribers."""
    table = models.table(models.OutboxEvent)

    async def everything_read() -> bool:
        async with connections.engine.connect() as connection:
            unsent = await connection.scalar(
                select(func.count()).select_from(table).where(table.c.published_at.is_(None))
            )
        if unsent or await connections.db.outbox.count_documents({"published": False}):
            return False
        return connections.hub.position == await connections.bus.latest()

    await until(everything_read, what="the outbox relayed and the bus read")


def relay_idle(relay: Relay) -> bool:
    """Whether the relay's task is suspended waiting to be woken (or polled)."""
    task = relay._task
    return task is not None and any(f.f_code.co_name == "wait" for f in awaits(task.get_coro()))
