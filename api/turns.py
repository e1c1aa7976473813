"""Turns: on a busy event loop, a new request waits for the work already in flight.

The engine runs an operation whose data is at hand from start to finish without giving the loop
back (`api.engine.optimistic`): the fastest way through, and the cause of a stall. Every request
that arrives in one poll of the loop runs in the same turn of it, one after the other; with 64
connections that is about 64 answers, some 60 ms of CPU, before the loop polls again. A request
that has to wait for a store (a cache entry expired, a vendor call) needs several polls (connect,
send, read), so each of its steps waited a whole turn: an expired entry took 600 ms to refetch,
and every request for that customer waited with it (p99 550 ms at 64 connections, p50 60 ms).

So new requests take turns. The first request started in a turn of the loop opens a budget of
`BUDGET` seconds; a request that finds it spent yields, and tries again in the next turn, where
the oldest waiting request goes first and opens that turn's budget, and the I/O completed by the
poll in between is handed on within it. A step of a request waiting on a store so waits about one
budget, not a whole turn. Work in flight never waits, and nothing waits on an idle loop.

A request yields at most `MAX_YIELDS` times: each yield is a wake-up of its task, and under a
flood of connections every waiting request would be woken once per turn. After that it starts
whatever the budget says, so overload degrades to larger turns, never to unbounded waits.
"""

from __future__ import annotations

import asyncio
from time import perf_counter

# About four agent screens' worth of CPU: a step of a request waiting on a store waits at most
# about this long (plus what in-flight work runs in the same turn), instead of a whole turn.
BUDGET = 0.004
# Turns a new request may wait: at 64 connections and ~1 ms a request, 64 arrivals need about
# 16 turns of 4 ms, so past 8 the turns grow instead (each wait costs a few microseconds).
MAX_YIELDS = 8


class Turns:
    """The turn budget of one event loop (one per app: an app serves one loop)."""

    __slots__ = ("_loop", "_opened")

    def __init__(self) -> None:
        self._opened: float | None = None  # when this turn's budget opened, None between turns
        self._loop: asyncio.AbstractEventLoop | None = None  # whose turn it is

    async def take(self) -> None:
        """Return once a new request may start: at once while this turn's budget lasts."""
        for _ in range(MAX_YIELDS):
            now = perf_counter()
            opened = self._opened
            if opened is None:
                self._open(now)
                return
            if now - opened < BUDGET:
                return
            if self._loop is not asyncio.get_running_loop():
                self._open(now)  # a budget a closed loop left open (tests run many loops)
                return
            await asyncio.sleep(0)  # back of the queue, behind this turn's other callbacks

    def _open(self, now: float) -> None:
        self._opened = now
        self._loop = loop = asyncio.get_running_loop()
        # Runs at the start of the next turn (a callback scheduled during a turn is run by the
        # next one), ahead of the requests that yield after it.
        loop.call_soon(self._close)

    def _close(self) -> None:
        self._opened = None
