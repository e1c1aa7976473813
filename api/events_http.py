"""`POST /events`: upstream systems send CloudEvents; valid ones are applied, others dead-lettered.

The body is one event (structured mode, `application/cloudevents+json`), a batch
(`application/cloudevents-batch+json`), or one event's data with its attributes in `ce-*`
headers (binary mode, `application/json`); see `sources.events.cloudevents`.

The items go to the ingestion pipeline (`app.state.ingestion`, `domain.ingestion`), which
validates each against the schema registry, applies the valid ones in order per customer and
keeps the others as dead letters with their reasons; an event whose id was applied before is
a duplicate (delivery is at least once, so a retry is not an error).

A batch is not all or nothing: its valid items are applied even when others are rejected, so
a producer must not resend the whole batch to fix the rejected ones (resending is harmless all
the same, since every applied id comes back as a duplicate). The answer tells each item's fate:

- 202 when no item was rejected, 400 when any was, both with
  `{"accepted": n, "duplicates": n, "rejected": n, "results": [{"index", "id", "status",
  "reasons"}]}`;
- 413 for a body or batch over the configured limits, 415 for a media type none of the three;
- 503 before the stores are open (`app.state.ingestion` is None), or when a store failed
  while applying (no later event of that customer is applied, and retrying the whole request
  is safe) or the dead-letter store did.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from api.guard import CallerRefusedError, Guard
from api.settings import Settings
from domain.ingestion import (
    ACCEPTED,
    DUPLICATE,
    REJECTED,
    ApplyFailedError,
    DeadLettersUnavailableError,
    Ingestion,
    Result,
)
from domain.principal import Scope
from resolvers.errors import request_errors
from sources.events.cloudevents import MEDIA_TYPES, CloudEventsRequestError, read_events

log = logging.getLogger(__name__)

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


def create_events_endpoint(settings: Settings) -> EventsEndpoint:
    """The `POST /events` handler; the pipeline is `app.state.ingestion`, read per request."""

    async def events(request: Request) -> Response:
        # Read per request, not bound here: the pipeline is installed once the stores it
        # writes to are open, after the app (and this endpoint) were built.
        ingestion: Ingestion | None = getattr(request.app.state, "ingestion", None)
        if ingestion is None:
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

        try:
            results = await ingestion.ingest(items)
        except ApplyFailedError:
            return _refused("Applying the events failed: retry the request.", 503)
        except DeadLettersUnavailableError:
            return _refused("The dead-letter store is unavailable: retry later.", 503)

        summary = _summary(results)
        return _json(summary, 400 if summary["rejected"] else 202)

    return events


def _summary(results: list[Result]) -> dict[str, Any]:
    statuses = [r.status for r in results]
    return {
        "accepted": statuses.count(ACCEPTED),
        "duplicates": statuses.count(DUPLICATE),
        "rejected": statuses.count(REJECTED),
        "results": [r.to_json() for r in results],
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
