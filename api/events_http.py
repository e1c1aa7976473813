"""`POST /events`: upstream systems send CloudEvents; valid ones are applied, others dead-lettered.

The body is one event (structured mode, `application/cloudevents+json`), a batch
(`application/cloudevents-batch+json`), or one event's data with its attributes in `ce-*`
headers (binary mode, `application/json`); see `sources.events.cloudevents`.

Every item is validated against the schema registry. A valid one becomes an `Event` and is
handed, in the order received, to the event applier (`app.state.event_applier`), which answers
True when it applied the event and False when it had already seen that event id (a duplicate:
delivery is at least once, so a retry is not an error), or raises `ChangeRejectedError` when
the event is valid but cannot apply (an unknown customer, say). Items that are invalid or
cannot apply are rejected: kept in the dead-letter store with their reasons.

A batch is not all or nothing: its valid items are applied even when others are rejected, so
a producer must not resend the whole batch to fix the rejected ones (resending is harmless all
the same, since every applied id comes back as a duplicate). The answer tells each item's fate:

- 202 when no item was rejected, 400 when any was, both with
  `{"accepted": n, "duplicates": n, "rejected": n, "results": [{"index", "id", "status",
  "reasons"}]}`;
- 413 for a body or batch over the configured limits, 415 for a media type none of the three;
- 503 when no applier is installed (`app.state.event_applier` is None), or the applier or the
  dead-letter store failed otherwise; processing stops at the first such failure, so that no
  later event of a customer overtakes an earlier one, and retrying the whole request is safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from api.connections import Connections
from api.errors import request_errors
from api.guard import CallerRefusedError, Guard
from api.principal import Scope
from api.settings import Settings
from domain.errors import ChangeRejectedError
from sources.events.cloudevents import (
    MEDIA_TYPES,
    CloudEventsRequestError,
    Malformed,
    read_events,
)
from sources.events.deadletters import Rejection, record_dead_letters
from sources.events.envelope import Event
from sources.events.registry import SchemaRegistry
from sources.sql.engine import begin_write

log = logging.getLogger(__name__)

# Customers whose events of one batch are applied at the same time, at most.
APPLY_CONCURRENCY = 16

Applier = Callable[[Event], Awaitable[bool]]
EventsEndpoint = Callable[[Request], Awaitable[Response]]


async def _refuse_publisher(request: Request) -> Response | None:
    """None when the caller may publish events (a service with `events:write`, or an admin)."""
    guard: Guard = request.app.state.guard
    try:
        principal = await guard.identify(
            request.client.host if request.client else None,
            lambda: guard.authenticator.from_headers(request.headers),
        )
    except CallerRefusedError as refused:
        return _refused(str(refused), refused.status, refused.headers, refused.code)
    if principal.anonymous:
        return _refused(
            "Authentication required to publish events.", 401, {"www-authenticate": "Bearer"}
        )
    if not principal.may(Scope.EVENTS):
        return _refused("Publishing events needs the `events:write` scope.", 403)
    return None


def create_events_endpoint(registry: SchemaRegistry, settings: Settings) -> EventsEndpoint:
    """The `POST /events` handler; the applier is `app.state.event_applier`, read per request."""

    async def events(request: Request) -> Response:
        # Read per request, not bound here: the applier is installed once the stores it
        # writes to are open, after the app (and this endpoint) were built.
        apply: Applier | None = getattr(request.app.state, "event_applier", None)
        if apply is None:
            return _refused("Event application is not available.", 503)
        refused = await _refuse_publisher(request)
        if refused is not None:
            return refused
        try:
            items = await read_events(
                request.headers,
                request.stream(),
                max_batch=settings.events_max_batch,
                max_body_bytes=settings.events_max_body_bytes,
            )
        except CloudEventsRequestError as error:
            headers = {"accept-post": ", ".join(MEDIA_TYPES)} if error.status == 415 else None
            return _refused(str(error), error.status, headers)

        results: list[dict[str, Any]] = []
        rejections: list[tuple[int, Rejection]] = []
        valid: list[tuple[dict[str, Any], dict[str, Any], Event]] = []
        for index, item in enumerate(items):
            if isinstance(item, Malformed):
                reasons, payload, event_id = [item.reason], item.payload, None
            else:
                reasons, payload, event_id = registry.validate(item), item, item.get("id")
            result: dict[str, Any] = {
                "index": index,
                "id": event_id if isinstance(event_id, str) else None,
                "status": "rejected" if reasons else "accepted",
                "reasons": reasons,
            }
            results.append(result)
            if reasons:
                rejections.append((index, Rejection(payload=payload, reasons=reasons)))
            else:
                assert isinstance(item, dict)
                valid.append((result, item, Event.from_json(item)))

        # One customer's events apply in the order sent; different customers' concurrently.
        by_subject: dict[str, list[tuple[dict[str, Any], dict[str, Any], Event]]] = {}
        for entry in valid:
            by_subject.setdefault(entry[2].subject, []).append(entry)
        slots = asyncio.Semaphore(APPLY_CONCURRENCY)

        async def apply_in_order(
            entries: list[tuple[dict[str, Any], dict[str, Any], Event]],
        ) -> bool:
            async with slots:
                for result, item, event in entries:
                    try:
                        applied = await apply(event)
                    except ChangeRejectedError as error:
                        # Valid, but it cannot apply (an unknown customer or order, a status the
                        # order cannot reach): sending it again would not help, so it is a
                        # dead letter too.
                        result["status"] = "rejected"
                        result["reasons"] = [f"cannot be applied: {error} ({error.code})"]
                        rejections.append((result["index"], Rejection(item, result["reasons"])))
                        continue
                    except Exception:
                        # Stop this customer here: applying its later events first would break
                        # its order. A retry re-applies nothing already applied (ids repeat).
                        log.exception("applying event %s (%s) failed", event.id, event.type)
                        return False
                    if not applied:
                        result["status"] = "duplicate"
            return True

        outcomes = await asyncio.gather(*(apply_in_order(e) for e in by_subject.values()))
        if not all(outcomes):
            # Nothing was dead-lettered yet, so a retry keeps nothing twice.
            return _refused("Applying the events failed: retry the request.", 503)

        connections: Connections = request.app.state.connections
        try:
            async with begin_write(connections.engine) as connection:
                await record_dead_letters(
                    connection=connection,
                    items=[r for _, r in sorted(rejections, key=lambda r: r[0])],
                )
        except (SQLAlchemyError, OSError):
            log.exception("could not record %d dead letters", len(rejections))
            return _refused("The dead-letter store is unavailable: retry later.", 503)

        summary = _summary(results)
        return _json(summary, 400 if summary["rejected"] else 202)

    return events


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = [r["status"] for r in results]
    return {
        "accepted": statuses.count("accepted"),
        "duplicates": statuses.count("duplicate"),
        "rejected": statuses.count("rejected"),
        "results": results,
    }


def _refused(
    message: str, status: int, headers: dict[str, str] | None = None, code: str | None = None
) -> Response:
    """A request refused as a whole: the `errors` shape of every route (`request_errors`)."""
    return _json(request_errors(message, status, code), status, headers)


def _json(payload: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers
    )
