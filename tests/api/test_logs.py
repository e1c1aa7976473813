"""Log records as JSON lines, request records in the access log, and no personal data in
either."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest

from api.access import LOGGER
from api.app import create_app
from api.connections import Connections
from api.logs import REQUEST_ID, JsonFormatter, LogFormat, TextFormatter, scrub
from api.settings import Settings
from domain.principal import Role
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT, bearer
from tests.builders import build_customer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _record(message: str, *args: object, failure: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(failure), failure, failure.__traceback__) if failure else None
    return logging.LogRecord("c360.test", logging.WARNING, __file__, 1, message, args, exc_info)


def test_a_json_line_carries_the_request_it_was_written_for_and_no_personal_data() -> None:
    try:
        raise ValueError("no customer has kai@example.com or +33612345678")
    except ValueError as error:
        failure = error
    token = REQUEST_ID.set("req-7")
    try:
        line = orjson.loads(
            JsonFormatter().format(
                _record(
                    "lookup of %s by %s failed",
                    "ana.lima@example.org",
                    "+44 20 7946 0958",
                    failure=failure,
                )
            )
        )
    finally:
        REQUEST_ID.reset(token)
    assert line["level"] == "WARNING" and line["logger"] == "c360.test"
    assert line["request_id"] == "req-7" and line["time"].endswith("+00:00")
    assert line["message"] == "lookup of [email] by [phone] failed"
    assert "ValueError: no customer has [email] or [phone]" in line["error"]
    assert "@" not in orjson.dumps(line).decode()
    # Outside a request, no request id.
    assert "request_id" not in orjson.loads(JsonFormatter().format(_record("idle")))


def test_text_lines_are_scrubbed_too() -> None:
    text = TextFormatter().format(_record("sent to %s", "kai@example.com"))
    assert text == "WARNING c360.test: sent to [email]"


@pytest.mark.parametrize(
    "kept",
    [
        "2026-12-07T09:32:09.123+00:00",
        "order 100234 of customer 7 at 12:30",
        "request 4c1e2a9f07b1-1f4 took 3.41 ms",
        "SKU-000123 x 2",
        "retry in +1.5 s, offset +02:00",
    ],
)
def test_scrubbing_keeps_times_ids_and_amounts(kept: str) -> None:
    assert scrub(kept) == kept


@pytest.mark.parametrize(
    ("written", "scrubbed"),
    [
        ("josé.núñez@exemplo.pt refused", "[email] refused"),
        (
            "duplicate key: {'email': 'kai+news@example.co.uk'}",
            "duplicate key: {'email': '[email]'}",
        ),
        ("+6834002 (Niue, 7 digits)", "[phone] (Niue, 7 digits)"),
        ("called +1 (415) 555.0100 twice", "called [phone] twice"),
    ],
)
def test_scrubbing_finds_what_the_domain_accepts(written: str, scrubbed: str) -> None:
    assert scrub(written) == scrubbed


class _Lines(logging.Handler):
    """Every record of a logger, as the JSON formatter writes it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_the_access_line_names_operations_principal_trace_and_error_codes(
    settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    email, phone = "ines.duarte.logs@example.com", "+351912345678"
    cid = await build_customer(connections, vendor_store, contact={"email": email, "phone": phone})
    access, everything = _Lines(), _Lines()
    logging.getLogger(LOGGER).addHandler(access)
    logging.getLogger().addHandler(everything)
    application = create_app(
        settings.model_copy(update={"access_log": True, "log_format": LogFormat.JSON})
    )
    screen = f'query Screen {{ customer(id: "{cid}") {{ email phone }} }}'
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://c360.test") as http:
                shown = await http.post(
                    "/graphql",
                    json={"query": screen},
                    headers={**AGENT, "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"},
                )
                assert shown.json()["data"]["customer"] == {"email": email, "phone": phone}
                await http.post("/graphql", json={"query": "{ nope }"}, headers=AGENT)
                await http.post("/graphql", json={"query": screen})  # anonymous
                by_email = bearer(Role.AGENT, subject="sam.agent@example.com")
                await http.post("/graphql", json={"query": "{ __typename }"}, headers=by_email)
    finally:
        logging.getLogger(LOGGER).removeHandler(access)
        logging.getLogger().removeHandler(everything)
    lines = [orjson.loads(orjson.loads(line)["message"]) for line in access.lines]
    assert [line["path"] for line in lines] == ["/graphql"] * 4
    named, invalid, anonymous, email_subject = lines
    assert named["operations"] == ["query Screen"] and named["trace_id"] == TRACE
    assert named["principal"] == {"kind": "jwt", "id": "test-agent", "role": "agent"}
    assert named["error_codes"] == [] and named["status"] == 200
    assert invalid["error_codes"] == ["GRAPHQL_VALIDATION_FAILED"]
    assert invalid["trace_id"] is None
    assert anonymous["principal"] == {"kind": "anonymous", "id": None, "role": "anonymous"}
    assert anonymous["error_codes"] and anonymous["operations"] == ["query Screen"]
    assert email_subject["principal"]["id"] == "[email]"
    # The customer's email and phone were in an answer; they are in no log line.
    written = "\n".join(access.lines + everything.lines)
    assert email not in written and phone not in written and "sam.agent@" not in written
    for line in everything.lines:
        orjson.loads(line)


def test_c360_leaves_logging_set_up_by_someone_else_alone() -> None:
    from api.logs import configure

    root = logging.getLogger()
    before = list(root.handlers)
    assert before, "pytest's own handlers are on the root logger"
    configure(LogFormat.JSON)
    assert root.handlers == before
