"""Turns: on a busy event loop, a new request waits for the work already in flight.

The engine runs an operation whose data is at hand from start to finish without giving the loop
back (`api.engine.optimistic`): the fastest way through, and the cause of a stall. Every request
that arrives in one poll of the loop runs in the same turn of it, one after the other; with 64
connections that is about 64 answers, some 60 ms of CPU, before the loop polls again. A request
that has to wait for a store (a cache entry expired, a vendor call) needs several polls (connect,
send, read), so each of its steps waited a whole turn: an expired entry took 600 ms to refetch,
and every request for that customer waited with it (p99 550 ms at 64 connections, p50 60 ms).

So new requests take turns. The first request started in a turn of the loop opens a budget of
`BUDGET` seconds; a request that finds it spent yields, and starts in a later turn, after the
I/O that completed meanwhile has been handed on. Work already in flight never waits, and
nothing waits on an idle loop: the budget only runs out when requests queue anyway.
"""

from __future__ import annotations

import asyncio
from time import perf_counter

# About four agent screens' worth of CPU: a step of a request waiting on a store waits at most
# about this long (plus what in-flight work runs in the same turn), instead of a whole turn.
BUDGET = 0.004


class Turns:
    """The turn budget of one event loop (one per app: an app serves one loop)."""

    __slots__ = ("_opened",)

    def __init__(self) -> None:
        self._opened: float | None = None  # when this turn's budget opened, None between turns

    async def take(self) -> None:
        """Return once a new request may start: at once while this turn's budget lasts."""
        while True:
            now = perf_counter()
            opened = self._opened
            if opened is None:
                self._opened = now
                # Runs at the start of the next turn (a callback scheduled during a turn is run
                # by the next one), ahead of the requests that yield below.
                asyncio.get_running_loop().call_soon(self._close)
                return
            if now - opened < BUDGET:
                return
            await asyncio.sleep(0)  # back of the queue: behind the I/O of this turn's poll

    def _close(self) -> None:
        self._opened = None
