"""A background task that does one piece of upkeep every so often, and lives through store
outages (one log line when one begins, one when it ends)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from sources.outage import Outage, stopping


class Periodic:
    """`work` every `every_seconds` (first after one wait), from `start` to `stop`."""

    def __init__(
        self, name: str, every_seconds: float, work: Callable[[], Awaitable[object]], outage: Outage
    ) -> None:
        self._name = name
        self._every = every_seconds
        self._work = work
        self._outage = outage
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self._work()
            except Exception as error:
                if stopping():  # the stop, turned into a store's error by its client
                    raise asyncio.CancelledError from error
                # Whatever went wrong, the task must live to try again.
                self._outage.failed(error)
            else:
                if stopping():  # the stop, swallowed by a client that retried and succeeded
                    raise asyncio.CancelledError
                self._outage.succeeded()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
