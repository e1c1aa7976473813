"""Spans, when tracing is on; nothing at all when it is off.

`api.tracing` turns tracing on at start-up when an OTLP endpoint is configured (`start`), and
off at shutdown (`stop`). While it is off, `TRACER` is None and each helper here costs a global
read: the request path makes no span objects, no context copies, no attribute dicts.

`span` and `traced_batch` make children of a span being recorded (a sampled request's), and
nothing otherwise: work outside a traced request (a WebSocket operation, a subscription's
re-resolution) does not become a trace of its own per loader batch. Background work that is
worth a span of its own says so once it is done (`record`).

Span attributes name sources, loaders, counts and operation names, never what a customer
wrote or is (no email, phone, address, key, variable or query text, no error message). The
drivers' spans (`client_span`) name the SQL statement (its text holds placeholders, never
values), the MongoDB command and collection (not the command's document), and the vendor
API's path.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

K = TypeVar("K")
V = TypeVar("V")

TRACER: Tracer | None = None

# Attribute names: OpenTelemetry's GraphQL conventions where they exist, c360's own otherwise.
OPERATION_NAME = "graphql.operation.name"
OPERATION_TYPE = "graphql.operation.type"
SOURCE = "c360.source"
LOADER = "c360.loader"
KEYS = "c360.keys"
FETCHED = "c360.fetched"  # keys the source was asked for: the rest came from the cache
EVENTS = "c360.events"
SUBSCRIPTIONS = "c360.subscriptions"  # the hub's subscriptions an event was offered to


def start(tracer: Tracer) -> None:
    """Spans from now on, made by `tracer` (one app per process traces)."""
    global TRACER
    TRACER = tracer


def stop(tracer: Tracer) -> None:
    """No spans from now on, if `tracer` is the one making them (another app's stop, in a
    process that runs several, leaves the tracing app's alone)."""
    global TRACER
    if TRACER is tracer:
        TRACER = None


_OFF = contextlib.nullcontext(trace.INVALID_SPAN)


def span(
    name: str, attributes: dict[str, Any] | None = None, kind: SpanKind = SpanKind.INTERNAL
) -> contextlib.AbstractContextManager[Span]:
    """A child of the current span for the block's duration (a failure raised out of it is
    marked on it, by type); a context that does nothing when tracing is off or no span is
    being recorded here."""
    tracer = TRACER
    if tracer is None or _untraced():
        return _OFF
    return _span(tracer, name, attributes, kind)


def _untraced() -> bool:
    """Whether no span is being recorded here: no traced request (its children would be roots
    of traces of their own), or one the sampler left out (its children would be left out too,
    and even a span that records nothing costs its making)."""
    return _recording() is None


def _recording() -> Span | None:
    """The current span when tracing is on and it is being recorded, else None."""
    if TRACER is None:
        return None
    current = trace.get_current_span()
    return current if current.is_recording() else None


@contextlib.contextmanager
def _span(
    tracer: Tracer, name: str, attributes: dict[str, Any] | None, kind: SpanKind
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name,
        kind=kind,
        attributes=attributes,
        # A failure's message may quote what a customer sent: only its type is kept.
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except Exception as error:
            current.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise


def client_span(name: str, attributes: dict[str, Any]) -> Span | None:
    """A CLIENT span (a call to a store) started now under the current span, for a driver's
    hooks that start and end it in separate calls (`ended`); None when tracing is off or no
    span is being recorded here."""
    tracer = TRACER
    if tracer is None or _untraced():
        return None
    return tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)


def ended(started: Span, failure: str | None = None) -> None:
    """End a `client_span`, marked failed with `failure` (a type's name, never a message)."""
    if failure is not None:
        started.set_status(Status(StatusCode.ERROR, failure))
    started.end()


def now() -> int:
    """The time a span `record`ed later starts at (0 when tracing is off)."""
    return time.time_ns() if TRACER is not None else 0


def record(name: str, started: int, attributes: dict[str, Any]) -> None:
    """A span from `started` (`now()`) to now, for work known to be worth one only once it
    is done (a relay pass that published something, not each empty poll)."""
    tracer = TRACER
    if tracer is not None and started:
        tracer.start_span(name, attributes=attributes, start_time=started).end()


def note(key: str, value: Any) -> None:
    """Set an attribute on the current span, if tracing is on and one is recording."""
    current = _recording()
    if current is not None:
        current.set_attribute(key, value)


def name_operation(kind: str, name: str | None) -> None:
    """Name the current span (the request's) for the GraphQL operation it runs."""
    current = _recording()
    if current is not None:
        current.update_name(f"{kind} {name}" if name else kind)
        current.set_attribute(OPERATION_TYPE, kind)
        if name:
            current.set_attribute(OPERATION_NAME, name)


def traced_batch(
    source: str, loader: str, batch: Callable[[Sequence[K]], Awaitable[Sequence[V]]]
) -> Callable[[Sequence[K]], Awaitable[Sequence[V]]]:
    """`batch` with a span per call when tracing is on (`batch` itself when it is off): a
    loader's batch, named by its source and loader, with how many keys it was given."""
    if TRACER is None or _untraced():
        return batch

    async def batch_in_a_span(keys: Sequence[K]) -> Sequence[V]:
        # FETCHED is 0 until the source is asked (the entity cache, or another request's fetch
        # in flight, may answer every key).
        attributes = {SOURCE: source, LOADER: loader, KEYS: len(keys), FETCHED: 0}
        with span(f"load {source}.{loader}", attributes):
            return await batch(keys)

    return batch_in_a_span
