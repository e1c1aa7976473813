"""The async MongoDB client (PyMongo's AsyncMongoClient), with its round-trip counter."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Span
from pymongo import AsyncMongoClient
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from sources import tracing
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


# Open command spans a client keeps at most (far more than its pool runs at once).
_OPEN_SPANS = 1000


class _TracingListener(CommandListener):
    """A span per command: its name, database and collection (not its document: a filter
    holds what it looks for)."""

    def __init__(self) -> None:
        self._spans: dict[int, Span] = {}

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name in _HOUSEKEEPING:
            return
        collection = event.command.get(event.command_name)
        attributes = {
            "db.system.name": "mongodb",
            "db.operation.name": event.command_name,
            "db.namespace": event.database_name,
        }
        if isinstance(collection, str):
            attributes["db.collection.name"] = collection
        started = tracing.client_span(f"mongo {event.command_name}", attributes)
        if started is not None:
            if len(self._spans) >= _OPEN_SPANS:
                # PyMongo tells of no end for a command whose task was cancelled (a loader's
                # deadline): the oldest open span is ended here rather than kept for ever.
                oldest = next(iter(self._spans))
                tracing.ended(self._spans.pop(oldest), "Abandoned")
            self._spans[event.request_id] = started

    def succeeded(self, event: CommandSucceededEvent) -> None:
        started = self._spans.pop(event.request_id, None)
        if started is not None:
            tracing.ended(started)

    def failed(self, event: CommandFailedEvent) -> None:
        started = self._spans.pop(event.request_id, None)
        if started is not None:
            tracing.ended(started, "CommandFailed")


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
    listeners: list[CommandListener] = (
        [_RoundTripListener(round_trips)] if round_trips is not None else []
    )
    if tracing.TRACER is not None:  # on for the app's lifetime: made after tracing started
        listeners.append(_TracingListener())
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
