"""The vendor client against a real HTTP server that answers as a vendor might when it is not
well: every answer that is not a batch answer is the vendor being unavailable, never data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sources.errors import SourceUnavailableError
from sources.loader import source_error
from sources.roundtrips import RoundTrips
from sources.thirdparty.client import create_client
from sources.thirdparty.loyalty import LOYALTY, MEMBERS_BATCH, members_by_customer_ids

PREFIX = "/vendor-api"
MEMBER = {
    "customerId": "7",
    "memberNumber": "LOY7",
    "tier": "gold",
    "points": 120,
    "enrolledAt": "2024-01-02T03:04:05+00:00",
}

Answer = Callable[[web.Request], web.StreamResponse]
Vendor = Callable[[Answer], Awaitable[str]]


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    """Serves one answer on a real socket; gives the base URL, with a path prefix."""
    servers: list[TestServer] = []

    async def elsewhere(_request: web.Request) -> web.Response:
        return web.json_response({"members": []})  # what a followed redirect would find

    async def serve(answer: Answer) -> str:
        async def handle(request: web.Request) -> web.StreamResponse:
            assert request.path == PREFIX + MEMBERS_BATCH  # the prefix is kept
            return answer(request)

        app = web.Application()
        app.router.add_post(PREFIX + MEMBERS_BATCH, handle)
        app.router.add_route("*", "/elsewhere", elsewhere)
        server = TestServer(app)
        servers.append(server)
        await server.start_server()
        return str(server.make_url(PREFIX))

    yield serve
    for server in servers:
        await server.close()


async def _ask(base_url: str, round_trips: RoundTrips | None = None) -> list[object]:
    client = create_client(LOYALTY, base_url, timeout=5.0, round_trips=round_trips)
    try:
        return list(await members_by_customer_ids(client, [7, 8]))
    finally:
        await client.close()


async def test_a_batch_answer_is_read_in_key_order(vendor: Vendor) -> None:
    base = await vendor(lambda _r: web.json_response({"members": [MEMBER]}))
    round_trips = RoundTrips()
    member, absent = await _ask(base, round_trips)
    assert getattr(member, "member_number", None) == "LOY7" and absent is None
    assert round_trips.snapshot()[LOYALTY.name] == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            lambda _r: web.Response(status=302, headers={"location": "/elsewhere"}),
            id="a redirect",
        ),
        pytest.param(lambda _r: web.Response(status=503), id="a 503"),
        pytest.param(lambda _r: web.Response(status=404), id="a 404"),
        pytest.param(lambda _r: web.Response(text="<html>busy</html>"), id="not JSON"),
        pytest.param(lambda _r: web.Response(body=b""), id="an empty body"),
        pytest.param(lambda _r: web.json_response({"members": None}), id="no members"),
        pytest.param(lambda _r: web.json_response([1, 2]), id="a list"),
        pytest.param(
            lambda _r: web.json_response({"members": [{"customerId": "7"}]}), id="a short member"
        ),
    ],
)
async def test_anything_but_a_batch_answer_is_the_vendor_unavailable(
    vendor: Vendor, answer: Answer
) -> None:
    base = await vendor(answer)
    with pytest.raises(Exception) as raised:
        await _ask(base)
    mapped = source_error(LOYALTY.name, raised.value)
    assert isinstance(mapped, SourceUnavailableError), repr(raised.value)


async def test_what_a_vendor_answered_is_not_in_the_error(vendor: Vendor) -> None:
    # The error is logged; a vendor's answer carries personal data.
    base = await vendor(
        lambda _r: web.json_response({"members": [{"customerId": "7", "memberNumber": "LOY-S3"}]})
    )
    with pytest.raises(Exception) as raised:
        await _ask(base)
    assert "LOY-S3" not in str(raised.value) and "LOY-S3" not in repr(raised.value)
