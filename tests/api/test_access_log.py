"""The access log: one JSON line per HTTP request, only when asked for."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.access import LOGGER
from api.app import create_app
from api.settings import Settings
from resolvers.errors import INTERNAL, request_errors
from tests.auth import AGENT


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(record.getMessage()))


async def _lines(settings: Settings) -> list[dict[str, object]]:
    # Given a handler already, the access logger keeps it (as it keeps a configured one).
    handler = _Lines()
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    try:
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://c360.test") as http:
                answer = await http.post(
                    "/graphql",
                    json={"query": "{ __typename }"},
                    headers={**AGENT, "x-request-id": "req-42"},
                )
                assert answer.status_code == 200
                missing = await http.get("/nowhere")
                assert missing.status_code == 404
    finally:
        logger.removeHandler(handler)
    return handler.lines


async def test_each_request_is_one_json_line_with_its_request_id(settings: Settings) -> None:
    graphql, missing = await _lines(settings.model_copy(update={"access_log": True}))
    assert graphql["method"] == "POST" and graphql["path"] == "/graphql"
    assert graphql["status"] == 200 and graphql["request_id"] == "req-42"
    assert graphql["bytes"] == len(b'{"data":{"__typename":"Query"}}')
    assert isinstance(graphql["duration_ms"], float) and graphql["duration_ms"] >= 0
    assert graphql["client"] == "127.0.0.1" and str(graphql["time"]).endswith("+00:00")
    assert missing["path"] == "/nowhere" and missing["status"] == 404


async def test_no_line_unless_asked_for(settings: Settings) -> None:
    assert not settings.access_log
    assert await _lines(settings) == []


async def test_an_unexpected_failure_answers_500_in_the_error_shape_with_the_request_id(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    application = create_app(settings.model_copy(update={"access_log": True}))

    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug in a route")

    application.router.routes.append(Route("/broken", broken))
    handler = _Lines()
    logging.getLogger(LOGGER).addHandler(handler)
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://c360.test") as http:
            answer = await http.get("/broken", headers={"x-request-id": "req-500"})
            unnamed = await http.get("/broken")
    finally:
        logging.getLogger(LOGGER).removeHandler(handler)
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "req-500"
    assert answer.json() == request_errors("Internal server error.", 500, INTERNAL)
    assert unnamed.status_code == 500 and unnamed.headers["x-request-id"]
    # Logged in full, under the id the caller was given; counted and in the access log.
    assert "req-500" in caplog.text and "a bug in a route" in caplog.text
    first = handler.lines[0]
    assert (first["status"], first["request_id"]) == (500, "req-500")
    assert len(handler.lines) == 2
