"""CloudEvents over HTTP: a request's headers and body as a list of raw structured events.

The three content modes of the CloudEvents HTTP binding are read:

- structured: `Content-Type: application/cloudevents+json`, the body is one event;
- batch: `Content-Type: application/cloudevents-batch+json`, the body is a JSON array of events;
- binary: `Content-Type: application/json`, the attributes are `ce-*` headers (percent-encoded,
  as the binding says) and the body is the event's `data`.

Each item comes back either as the event in structured form (a dict for `SchemaRegistry.validate`
and `Event.from_json`), whatever the mode it arrived in, or as a `Malformed` item saying why it
could not be read, with as much of it as was read: both are kept in the dead-letter store. What
makes the whole request unreadable (an unsupported media type, too large a body or batch) raises
`CloudEventsRequestError` with the HTTP status to answer.

The `cloudevents` SDK (2.2.0) is not used, because it does not fit this job:

- it has no batch mode, one of the three we must read;
- its `CloudEvent` fills in a missing `id` with a fresh UUID and a missing `time` with now, so an
  event without an id would be accepted under an id nobody sent and lose its idempotency;
- it raises on the first invalid attribute and parses `time` with dateutil's lenient ISO 8601
  parser before any check of ours runs, where ingestion wants every reason, RFC 3339 strictly,
  and the raw event to dead-letter;
- in binary mode a body that is not JSON silently becomes a string `data`.

What would remain of it is the `ce-` prefix and percent-decoding of header values, a few lines
here; it would also bring python-dateutil and deprecation as dependencies.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

import orjson

from sources.events.registry import json_kind

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
BINARY = "application/json"
MEDIA_TYPES = (STRUCTURED, BATCH, BINARY)
CE_PREFIX = "ce-"
# Stored with a dead letter when a body is not JSON: enough to see what was sent.
_RAW_TEXT_CHARS = 4096

Mode = Literal["structured", "batch", "binary"]
_MODES: dict[str, Mode] = {STRUCTURED: "structured", BATCH: "batch", BINARY: "binary"}


class CloudEventsRequestError(Exception):
    """A request that cannot be read as CloudEvents at all; `status` is the HTTP answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Malformed:
    """An item that could not be read as an event: why, and what of it could be read."""

    reason: str
    payload: Any


Item = dict[str, Any] | Malformed


def content_mode(headers: Mapping[str, str]) -> Mode:
    """The content mode a request's Content-Type names (415 when it names none we read)."""
    content_type = headers.get("content-type")
    if content_type is None:
        raise CloudEventsRequestError(
            f"A Content-Type is required: one of {', '.join(MEDIA_TYPES)}.", 415
        )
    media = content_type.partition(";")[0].strip().lower()
    mode = _MODES.get(media)
    if mode is None:
        raise CloudEventsRequestError(
            f"Unsupported Content-Type {media!r}; send one of {', '.join(MEDIA_TYPES)}.", 415
        )
    return mode


async def read_body(
    chunks: AsyncIterable[bytes], *, content_length: str | None, max_bytes: int
) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed `max_bytes`."""
    too_large = CloudEventsRequestError(
        f"The body is larger than {max_bytes} bytes; send fewer events per request.", 413
    )
    # A declared length is refused before reading; a chunked or lying body while reading.
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


def parse(mode: Mode, headers: Mapping[str, str], body: bytes, *, max_batch: int) -> list[Item]:
    """The events of one request body in `mode`, each a structured event dict or `Malformed`."""
    if mode == "binary":
        return [_binary_event(headers, body)]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return [Malformed(f"the body is not valid JSON: {error}", _raw_text(body))]
    if mode == "structured":
        if isinstance(document, list):
            return [
                Malformed(
                    f"a JSON array needs Content-Type {BATCH}; {STRUCTURED} is one event",
                    document,
                )
            ]
        return [_structured(document)]
    if not isinstance(document, list):
        return [Malformed(f"an {BATCH} body must be a JSON array of events", document)]
    if len(document) > max_batch:
        raise CloudEventsRequestError(
            f"The batch holds {len(document)} events; at most {max_batch} are accepted per "
            "request.",
            413,
        )
    return [_structured(item) for item in document]


async def read_events(
    headers: Mapping[str, str],
    chunks: AsyncIterable[bytes],
    *,
    max_batch: int,
    max_body_bytes: int,
) -> list[Item]:
    """Every event of an HTTP request, in order: the media type, then the body, then parsing."""
    mode = content_mode(headers)
    body = await read_body(
        chunks, content_length=headers.get("content-length"), max_bytes=max_body_bytes
    )
    return parse(mode, headers, body, max_batch=max_batch)


def _structured(document: Any) -> Item:
    if isinstance(document, dict):
        return document
    return Malformed(f"an event must be a JSON object, not {json_kind(document)}", document)


def _binary_event(headers: Mapping[str, str], body: bytes) -> Item:
    event: dict[str, Any] = {
        name.lower()[len(CE_PREFIX) :]: unquote(value)
        for name, value in headers.items()
        if name.lower().startswith(CE_PREFIX) and len(name) > len(CE_PREFIX)
    }
    event["datacontenttype"] = BINARY
    if not event.keys() - {"datacontenttype"}:
        return Malformed(
            f"an {BINARY} body needs the event's attributes in ce-* headers (ce-specversion, "
            f"ce-id, ce-source, ce-type, ce-subject, ce-time), or send Content-Type {STRUCTURED}",
            {"data": _json_or_text(body)},
        )
    if body:
        try:
            event["data"] = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return Malformed(
                f"the body (the event's data) is not valid JSON: {error}",
                {**event, "data": _raw_text(body)},
            )
    return event


def _json_or_text(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return _raw_text(body)


def _raw_text(body: bytes) -> str:
    return body[:_RAW_TEXT_CHARS].decode("utf-8", errors="replace")
