"""The async MongoDB client (PyMongo's AsyncMongoClient), with its round-trip counter."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from sources.mongo.source import MONGO
from sources.roundtrips import RoundTrips

# Driver housekeeping, not reads or writes the graph asked for.
_HOUSEKEEPING = frozenset(
    {
        "hello",
        "ismaster",
        "isMaster",
        "ping",
        "endSessions",
        "saslStart",
        "saslContinue",
        "buildinfo",
    }
)


class _RoundTripListener(CommandListener):
    def __init__(self, round_trips: RoundTrips) -> None:
        self._round_trips = round_trips

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name not in _HOUSEKEEPING:
            self._round_trips.record(MONGO.name)

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def create_client(
    url: str, *, timeout: float, round_trips: RoundTrips | None = None
) -> AsyncMongoClient[dict[str, Any]]:
    """A client that fails fast when the server is away, so a query is not held up by it."""
    listeners = [_RoundTripListener(round_trips)] if round_trips is not None else []
    timeout_ms = int(timeout * 1000)
    # Finding no server gives up before the call's own timeout, so an unreachable MongoDB
    # reports SOURCE_UNAVAILABLE rather than SOURCE_TIMEOUT.
    selection_ms = max(timeout_ms // 2, 1)
    return AsyncMongoClient(
        url,
        tz_aware=True,
        event_listeners=listeners,
        serverSelectionTimeoutMS=selection_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
    )
