"""One error vocabulary: every answer of every route carries X-Request-ID; a document that is
not GraphQL is GRAPHQL_PARSE_FAILED, one the schema refuses GRAPHQL_VALIDATION_FAILED, one
over the token limit QUERY_TOO_COMPLEX (400, with the measure, as every limit); a request
refused as a whole has the same `errors` shape, with a code, on /graphql and /events."""

from __future__ import annotations

import httpx
import pytest

from api.settings import Settings
from tests.auth import AGENT

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/graphiql/assets/graphiql.css"),
        ("GET", "/no-such-route"),
        ("POST", "/events"),
        ("POST", "/graphql"),
        ("PUT", "/graphql"),
    ],
)
async def test_every_answer_carries_a_request_id(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    made = await client.request(method, path, headers={"x-request-id": ""})
    echoed = await client.request(method, path, headers={"x-request-id": "trace-42"})
    assert made.headers["x-request-id"] and made.headers["x-request-id"] != "trace-42"
    assert echoed.headers["x-request-id"] == "trace-42"


async def _errors(
    client: httpx.AsyncClient, query: str, accept: str, **extra: object
) -> tuple[int, list[dict[str, object]]]:
    response = await client.post(
        "/graphql", json={"query": query, **extra}, headers={"accept": accept}
    )
    return response.status_code, response.json()["errors"]


@pytest.mark.parametrize(("accept", "status"), [(JSON, 200), (GRAPHQL_RESPONSE, 400)])
async def test_parse_and_validation_errors_name_their_code(
    client: httpx.AsyncClient, accept: str, status: int
) -> None:
    assert (await _errors(client, "{ customer(", accept))[0] == status
    [parse] = (await _errors(client, "{ customer(", accept))[1]
    assert parse["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}
    got, [invalid] = await _errors(client, "{ noSuchField }", accept)
    assert got == status and invalid["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    got, [unknown] = await _errors(client, "query A { __typename }", accept, operationName="B")
    assert got == status and unknown["extensions"] == {"code": "OPERATION_RESOLUTION_FAILURE"}


@pytest.mark.parametrize("accept", [JSON, GRAPHQL_RESPONSE])
async def test_a_document_over_the_token_limit_is_too_complex(
    client: httpx.AsyncClient, settings: Settings, accept: str
) -> None:
    allowed = settings.limit_tokens
    query = "{ " + "__typename " * allowed + "}"
    status, [error] = await _errors(client, query, accept)
    assert status == 400
    assert error["extensions"] == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": "tokens",
        "measured": allowed + 1,
        "allowed": allowed,
    }


async def test_requests_refused_whole_have_one_shape_on_every_route(
    client: httpx.AsyncClient,
) -> None:
    bad_json = await client.post("/graphql", content=b"{", headers={"content-type": JSON} | AGENT)
    assert bad_json.status_code == 400
    assert bad_json.json()["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}
    anonymous = await client.post(
        "/events", content=b"{}", headers={"content-type": JSON, "authorization": ""}
    )
    assert anonymous.status_code == 401
    [error] = anonymous.json()["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"} and error["message"]
