"""A time limit on a store call that counts the store's time, not the event loop's.

`asyncio.timeout` counts wall time. On a busy loop (two cores, hundreds of requests, one of
them holding the loop for a few hundred milliseconds) a reply that came back in time but was
not read yet counts as late: a healthy Redis was judged down under ordinary load, opened the
cache's breaker, and set off every degraded path at once. Here the limit runs as ticks of at
most TICK seconds; a tick that fires late was held up by the loop, and only its nominal length
counts. When the last tick runs out, the cancellation waits one loop iteration, so a reply
already read off the socket in this iteration still wins.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

TICK = 0.05
# A client's own socket timeout, as a multiple of its deadline: only a backstop for calls made
# outside a Deadline (closing, say), long enough never to cut one short that is under one.
SOCKET_BACKSTOP = 10


class Deadline:
    """`async with Deadline(s):` raises TimeoutError when the block takes more than `s`
    seconds of time the event loop could have spent on it."""

    __slots__ = ("_handle", "_left", "_loop", "_seconds", "_timeout")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._left = seconds
        self._handle: asyncio.TimerHandle | None = None
        self._timeout = asyncio.timeout(None)

    async def __aenter__(self) -> Deadline:
        self._loop = asyncio.get_running_loop()
        await self._timeout.__aenter__()
        self._arm()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        await self._timeout.__aexit__(kind, error, traceback)

    def _arm(self) -> None:
        step = min(self._left, TICK)
        self._left -= step
        self._handle = self._loop.call_later(step, self._tick)

    def _tick(self) -> None:
        if self._left > 1e-9:
            self._arm()
            return
        self._handle = None
        # Due now: asyncio runs it in the next iteration, after the wake-ups this one queued.
        self._timeout.reschedule(self._loop.time())
