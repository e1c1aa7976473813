"""POST /events: the three CloudEvents HTTP modes, per-item results, duplicates, limits, and the
dead-letter store behind them (written by the endpoint, read back by `c360 events`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from api.cli import main
from api.connections import Connections
from api.settings import Settings
from domain.errors import ChangeRejectedError
from resolvers.errors import request_errors
from sources.events.deadletters import DeadLetterRecord, list_dead_letters
from sources.events.envelope import Event
from tests.auth import PUBLISHER

STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}
UNKNOWN_CUSTOMER = "999999999"


class RecordingApplier:
    """The applier the endpoint calls: keeps what it applied, reports an id seen before, and
    refuses events of one customer id as a store would refuse an unknown customer."""

    def __init__(self) -> None:
        self.applied: list[Event] = []

    async def __call__(self, event: Event) -> bool:
        if event.subject == UNKNOWN_CUSTOMER:
            raise ChangeRejectedError("NOT_FOUND", f"no customer has id {event.subject}", "subject")
        if any(seen.id == event.id for seen in self.applied):
            return False
        self.applied.append(event)
        return True


@pytest.fixture
def applier(app: Starlette) -> Iterator[RecordingApplier]:
    previous = app.state.ingestion
    recorder = RecordingApplier()
    app.state.ingestion = previous.applying(recorder)
    yield recorder
    app.state.ingestion = previous


def consent_event(**attributes: Any) -> dict[str, Any]:
    """A valid consent.changed event with a fresh id; attributes override."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"evt-{uuid.uuid4()}",
        "source": "urn:test:preferences",
        "type": "consent.changed",
        "subject": "7",
        "time": "2026-11-22T09:30:00Z",
        "data": {"channel": "EMAIL", "granted": True},
    }
    body.update(attributes)
    return body


async def dead_letters(connections: Connections, limit: int = 20) -> list[DeadLetterRecord]:
    async with connections.engine.connect() as connection:
        return await list_dead_letters(connection=connection, limit=limit)


async def test_a_structured_event_is_applied(
    client: httpx.AsyncClient, applier: RecordingApplier
) -> None:
    body = consent_event(dataschema="urn:c360:schema:consent.changed:v1", tenant="eu")
    response = await client.post(
        "/events", content=orjson.dumps(body), headers=PUBLISHER | STRUCTURED
    )
    assert response.status_code == 202
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": 0,
        "results": [{"index": 0, "id": body["id"], "status": "accepted", "reasons": []}],
    }
    [event] = applier.applied
    assert (event.id, event.type, event.subject, event.data) == (
        body["id"],
        "consent.changed",
        "7",
        {"channel": "EMAIL", "granted": True},
    )
    assert event.time.isoformat() == "2026-11-22T09:30:00+00:00"
    assert event.extensions == {"tenant": "eu"}


async def test_a_batch_applies_its_valid_events_and_dead_letters_the_rest(
    client: httpx.AsyncClient, applier: RecordingApplier, connections: Connections
) -> None:
    first, last = consent_event(subject="7"), consent_event(subject="8")
    bad_data = consent_event(data={"channel": "FAX", "granted": "yes"})
    batch = [first, bad_data, "not an event", last]
    response = await client.post("/events", content=orjson.dumps(batch), headers=PUBLISHER | BATCH)

    assert response.status_code == 400
    payload = response.json()
    assert (payload["accepted"], payload["duplicates"], payload["rejected"]) == (2, 0, 2)
    assert [(r["index"], r["id"], r["status"]) for r in payload["results"]] == [
        (0, first["id"], "accepted"),
        (1, bad_data["id"], "rejected"),
        (2, None, "rejected"),
        (3, last["id"], "accepted"),
    ]
    assert payload["results"][1]["reasons"] == [
        'data.channel: "FAX" is not one of EMAIL, SMS, PHONE, PUSH, POST',
        "data.granted: must be a boolean, not a string",
    ]
    assert payload["results"][2]["reasons"] == ["an event must be a JSON object, not a string"]
    assert [e.id for e in applier.applied] == [first["id"], last["id"]]

    newest, older = (await dead_letters(connections))[:2]
    assert newest.payload == "not an event"
    assert (newest.event_id, newest.type, newest.source) == (None, None, None)
    assert newest.reasons == ["an event must be a JSON object, not a string"]
    assert older.payload == bad_data
    assert (older.event_id, older.type, older.source) == (
        bad_data["id"],
        "consent.changed",
        "urn:test:preferences",
    )
    assert older.reasons == payload["results"][1]["reasons"]
    assert older.received_at.tzinfo is not None
    assert newest.id > older.id


async def test_an_event_that_cannot_apply_is_rejected_and_the_rest_applied(
    client: httpx.AsyncClient, applier: RecordingApplier, connections: Connections
) -> None:
    before, orphan, after = (
        consent_event(),
        consent_event(subject=UNKNOWN_CUSTOMER),
        consent_event(),
    )
    response = await client.post(
        "/events", content=orjson.dumps([before, orphan, after]), headers=PUBLISHER | BATCH
    )
    assert response.status_code == 400
    payload = response.json()
    assert (payload["accepted"], payload["duplicates"], payload["rejected"]) == (2, 0, 1)
    reasons = ["cannot be applied: no customer has id 999999999 (NOT_FOUND)"]
    assert payload["results"][1] == {
        "index": 1,
        "id": orphan["id"],
        "status": "rejected",
        "reasons": reasons,
    }
    assert [e.id for e in applier.applied] == [before["id"], after["id"]]
    [letter] = await dead_letters(connections, limit=1)
    assert (letter.event_id, letter.reasons, letter.payload) == (orphan["id"], reasons, orphan)


async def test_a_binary_mode_event_is_read_from_its_headers(
    client: httpx.AsyncClient, applier: RecordingApplier
) -> None:
    event_id = f"evt-{uuid.uuid4()}"
    headers = {
        "content-type": "application/json; charset=utf-8",
        "ce-specversion": "1.0",
        "ce-id": event_id,
        # Header values are percent-encoded (CloudEvents HTTP binding, 3.1.3.2).
        "ce-source": "https://roadside.example/dispatch%20eu",
        "ce-type": "ticket.status_changed",
        "ce-subject": "12",
        "ce-time": "2026-11-22T09:30:00+01:00",
        "ce-dataschema": "urn:c360:schema:ticket.status_changed:v1",
    }
    data = {
        "ticket_id": "T-0000042",
        "status": "PENDING",
        "assignee": "technician-17",
        "eta": "2026-11-22T10:15:00+01:00",
    }
    response = await client.post("/events", content=orjson.dumps(data), headers=PUBLISHER | headers)
    assert response.status_code == 202, response.text
    assert response.json()["results"] == [
        {"index": 0, "id": event_id, "status": "accepted", "reasons": []}
    ]
    [event] = applier.applied
    assert event.source == "https://roadside.example/dispatch eu"
    assert (event.type, event.subject, event.data) == ("ticket.status_changed", "12", data)
    assert event.dataschema == "urn:c360:schema:ticket.status_changed:v1"


async def test_binary_mode_needs_the_ce_headers(
    client: httpx.AsyncClient, applier: RecordingApplier, connections: Connections
) -> None:
    marker = f"no-headers-{uuid.uuid4()}"
    response = await client.post("/events", json={"marker": marker}, headers=PUBLISHER)
    assert response.status_code == 400
    [result] = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["reasons"][0].startswith("an application/json body needs the event's attributes")
    assert applier.applied == []
    [letter] = await dead_letters(connections, limit=1)
    assert letter.payload == {"data": {"marker": marker}}


async def test_binary_mode_data_that_is_not_json_is_rejected(
    client: httpx.AsyncClient, applier: RecordingApplier, connections: Connections
) -> None:
    event_id = f"evt-{uuid.uuid4()}"
    headers = {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "urn:test",
        "ce-type": "consent.changed",
        "ce-subject": "7",
        "ce-time": "2026-11-22T09:30:00Z",
    }
    response = await client.post("/events", content=b"{granted", headers=PUBLISHER | headers)
    assert response.status_code == 400
    [result] = response.json()["results"]
    assert result["reasons"][0].startswith("the body (the event's data) is not valid JSON")
    [letter] = await dead_letters(connections, limit=1)
    assert (letter.event_id, letter.type, letter.source) == (
        event_id,
        "consent.changed",
        "urn:test",
    )
    assert letter.payload["data"] == "{granted"


async def test_an_event_id_seen_before_is_a_duplicate(
    client: httpx.AsyncClient, applier: RecordingApplier
) -> None:
    body = consent_event()
    first = await client.post("/events", content=orjson.dumps(body), headers=PUBLISHER | STRUCTURED)
    again = await client.post("/events", content=orjson.dumps(body), headers=PUBLISHER | STRUCTURED)
    assert first.status_code == again.status_code == 202
    assert again.json() == {
        "accepted": 0,
        "duplicates": 1,
        "rejected": 0,
        "results": [{"index": 0, "id": body["id"], "status": "duplicate", "reasons": []}],
    }
    twice = await client.post(
        "/events", content=orjson.dumps([body, body]), headers=PUBLISHER | BATCH
    )
    assert twice.status_code == 202
    assert [r["status"] for r in twice.json()["results"]] == ["duplicate", "duplicate"]
    assert [e.id for e in applier.applied] == [body["id"]]


async def test_an_empty_batch_is_accepted(
    client: httpx.AsyncClient, applier: RecordingApplier
) -> None:
    response = await client.post("/events", content=b"[]", headers=PUBLISHER | BATCH)
    assert response.status_code == 202
    assert response.json() == {"accepted": 0, "duplicates": 0, "rejected": 0, "results": []}


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (STRUCTURED, b"{not json", "the body is not valid JSON"),
        (STRUCTURED, b"[]", "a JSON array needs Content-Type application/cloudevents-batch+json"),
        (BATCH, b'{"specversion": "1.0"}', "an application/cloudevents-batch+json body must be"),
    ],
)
async def test_a_body_of_the_wrong_shape_is_rejected_and_kept(
    client: httpx.AsyncClient,
    applier: RecordingApplier,
    connections: Connections,
    headers: dict[str, str],
    body: bytes,
    reason: str,
) -> None:
    response = await client.post("/events", content=body, headers=PUBLISHER | headers)
    assert response.status_code == 400
    [result] = response.json()["results"]
    assert (result["index"], result["id"], result["status"]) == (0, None, "rejected")
    assert result["reasons"][0].startswith(reason)
    [letter] = await dead_letters(connections, limit=1)
    assert letter.reasons == result["reasons"]
    assert letter.payload == (body.decode() if body.startswith(b"{not") else orjson.loads(body))


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/cloudevents+xml", None]
)
async def test_an_unsupported_content_type_is_415(
    client: httpx.AsyncClient, applier: RecordingApplier, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/events", content=b"{}", headers=PUBLISHER | headers)
    assert response.status_code == 415
    [error] = response.json()["errors"]
    assert "application/cloudevents+json" in error["message"]
    assert error["extensions"] == {"code": "UNSUPPORTED_MEDIA_TYPE"}
    assert response.headers["accept-post"] == (
        "application/cloudevents+json, application/cloudevents-batch+json, application/json"
    )


async def test_a_body_over_the_limit_is_413(
    client: httpx.AsyncClient, applier: RecordingApplier, settings: Settings
) -> None:
    too_big = b" " * (settings.events_max_body_bytes + 1)
    response = await client.post("/events", content=too_big, headers=PUBLISHER | STRUCTURED)
    assert response.status_code == 413
    assert response.json() == {
        "errors": [
            {
                "message": "The body is larger than 1048576 bytes; send fewer events per request.",
                "extensions": {"code": "PAYLOAD_TOO_LARGE"},
            }
        ]
    }

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit holds while the body streams in.
        for _ in range(settings.events_max_body_bytes // 65536 + 1):
            yield b" " * 65536

    streamed = await client.post("/events", content=chunks(), headers=PUBLISHER | STRUCTURED)
    assert streamed.status_code == 413
    assert applier.applied == []


async def test_a_batch_over_the_limit_is_413(
    client: httpx.AsyncClient, applier: RecordingApplier, settings: Settings
) -> None:
    batch = [consent_event() for _ in range(settings.events_max_batch + 1)]
    response = await client.post("/events", content=orjson.dumps(batch), headers=PUBLISHER | BATCH)
    assert response.status_code == 413
    assert response.json() == {
        "errors": [
            {
                "message": "The batch holds 501 events; at most 500 are accepted per request.",
                "extensions": {"code": "PAYLOAD_TOO_LARGE"},
            }
        ]
    }
    assert applier.applied == []
    full = await client.post("/events", content=orjson.dumps(batch[:-1]), headers=PUBLISHER | BATCH)
    assert full.status_code == 202
    assert full.json()["accepted"] == settings.events_max_batch


async def test_without_an_applier_events_are_not_taken(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    previous = app.state.ingestion
    app.state.ingestion = None
    try:
        response = await client.post(
            "/events", content=orjson.dumps(consent_event()), headers=STRUCTURED
        )
    finally:
        app.state.ingestion = previous
    assert response.status_code == 503
    assert response.json() == request_errors("Event application is not available.", 503)
    assert response.json()["errors"][0]["extensions"] == {"code": "SERVICE_UNAVAILABLE"}


async def test_a_failing_applier_answers_503_and_stops(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    seen: list[str] = []

    async def failing(event: Event) -> bool:
        seen.append(event.id)
        raise ConnectionError("the store is down")

    previous = app.state.ingestion
    app.state.ingestion = previous.applying(failing)
    try:
        batch = [consent_event(), consent_event()]
        response = await client.post(
            "/events", content=orjson.dumps(batch), headers=PUBLISHER | BATCH
        )
    finally:
        app.state.ingestion = previous
    assert response.status_code == 503
    assert response.json() == request_errors("Applying the events failed: retry the request.", 503)
    assert seen == [batch[0]["id"]]


async def test_dead_letters_are_listed_by_the_command_line(
    client: httpx.AsyncClient,
    applier: RecordingApplier,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = consent_event(subject="not-a-customer")
    new = consent_event(type="customer.deleted")
    for body in (old, new):
        response = await client.post(
            "/events", content=orjson.dumps(body), headers=PUBLISHER | STRUCTURED
        )
        assert response.status_code == 400
    capsys.readouterr()

    monkeypatch.setenv("C360_DATABASE_URL", settings.resolved_database_url())
    # The command runs its own event loop, as it does from a shell: off this test's loop.
    code = await asyncio.to_thread(main, ["events", "dead-letters", "--limit", "2"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split("\t") for line in lines]
    assert [(row[2], row[3]) for row in rows] == [
        ("customer.deleted", new["id"]),
        ("consent.changed", old["id"]),
    ]
    assert rows[0][4] == 'type "customer.deleted" is not a registered event type'
    assert rows[1][4] == (
        'subject must be the customer id, a string of digits (got "not-a-customer")'
    )
    assert int(rows[0][0]) > int(rows[1][0])

    code = await asyncio.to_thread(
        main, ["events", "dead-letters", "--limit", "1", "--before", rows[0][0]]
    )
    assert code == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split("\t")[3] == old["id"]
