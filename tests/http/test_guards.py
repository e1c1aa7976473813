"""The gates before execution: tokens, limits, rate limits, persisted and trusted documents,
body size, batches, timeouts, production mode, CSRF and CORS."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from api.documents import add_document
from api.keys import create_key
from api.settings import DEVELOPMENT_JWT_SECRET, Environment, Settings
from api.startup import UnsafeConfigurationError, refuse_production_without_auth
from domain.principal import Role
from migrations.runner import upgrade
from sources.sql.engine import create_engine
from tests.auth import AGENT, bearer, token
from tests.conftest import Simulator, running_app

TYPENAME = {"query": "{ __typename }"}
ME = {"query": '{ customer(id: "1") { id } }'}


def _claims(**changes: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    claims = {
        "sub": "someone",
        "roles": ["agent"],
        "iss": "c360-development",
        "aud": "c360",
        "iat": now,
        "nbf": now,
        "exp": now + dt.timedelta(minutes=5),
    }
    return claims | changes


def _signed(claims: dict[str, Any], secret: str = DEVELOPMENT_JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def _tampered() -> str:
    header, _, signature = _signed(_claims()).split(".")
    payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(_signed(_claims(roles=["admin"])).split(".")[1])
    ).decode()
    return f"{header}.{payload}.{signature}"


# Minted when the test runs, not when the module is collected: a token made at collection
# would expire (five minutes) before a long suite reaches its test.
BAD_TOKENS: dict[str, tuple[Callable[[], str], str]] = {
    "expired": (
        lambda: _signed(_claims(exp=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))),
        "the token has expired",
    ),
    "wrong audience": (lambda: _signed(_claims(aud="another-service")), "another audience"),
    "wrong key": (lambda: _signed(_claims(), "another-secret-of-at-least-32-bytes!"), "signature"),
    "tampered": (_tampered, "signature"),
    "not a token": (lambda: "not-a-token", "malformed"),
    # A customer's view is bounded by its id: no other role may ride along.
    "customer with another role": (
        lambda: _signed(_claims(sub="3", roles=["customer", "analyst"])),
        "no other role",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_a_bad_token_is_refused_over_http(client: httpx.AsyncClient, case: str) -> None:
    mint, reason = BAD_TOKENS[case]
    bad = mint()
    response = await client.post("/graphql", json=ME, headers={"authorization": f"Bearer {bad}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    [error] = response.json()["errors"]
    assert reason in error["message"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert bad not in response.text


async def test_anonymous_gets_only_typename(app: Starlette) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://c360.test") as anonymous:
        assert (await anonymous.post("/graphql", json=TYPENAME)).json() == {
            "data": {"__typename": "Query"}
        }
        response = await anonymous.post("/graphql", json=ME)
        assert response.status_code == 401
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
        assert "__typename" in error["message"]
        # Development allows introspection to anyone (GraphiQL); production does not.
        schema = await anonymous.post(
            "/graphql", json={"query": "{ __schema { queryType { name } } }"}
        )
        assert schema.json()["data"]["__schema"]["queryType"]["name"] == "Query"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            '{ customer(id: "1") { orders { edges { node { customer { orders { edges { node {'
            " customer { orders { edges { node { customer { id } } } } } } } } } } } } } }",
            "levels deep",
        ),
        ("{ " + " ".join(f"a{n}: __typename" for n in range(101)) + " }", "aliases"),
        ("{ " + "a " * 5_001 + "}", "more than 5,000 tokens"),
        (
            '{ customer(id: "1") { orders(first: 100) { edges { node { lines { product { name } }'
            " customer { orders(first: 100) { edges { node { id lines { quantity } } } } } } } }"
            " } }",
            "over the agent budget of 20,000",
        ),
    ],
    ids=["depth", "aliases", "tokens", "cost"],
)
async def test_each_limit_is_refused_before_execution_with_its_message(
    client: httpx.AsyncClient, query: str, message: str
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": query},
        headers={"accept": "application/graphql-response+json"},
    )
    assert response.status_code == 400
    assert message in response.json()["errors"][0]["message"]
    assert "data" not in response.json()


async def test_cost_budgets_are_per_role(client: httpx.AsyncClient) -> None:
    query = (
        '{ customer(id: "1") { orders(first: 100) { edges { node { lines { quantity product '
        "{ name } } } } } } }"
    )
    # It costs 1,302: within an agent's budget (20,000), over a customer's (1,000).
    agent = await client.post("/graphql", json={"query": query})
    assert agent.status_code == 200 and "errors" not in agent.json()
    customer = await client.post(
        "/graphql", json={"query": query}, headers=bearer(Role.CUSTOMER, subject="1")
    )
    assert customer.status_code == 400
    assert "over the customer budget" in customer.json()["errors"][0]["message"]


async def test_a_cost_beyond_64_bits_is_refused_not_a_server_error(
    client: httpx.AsyncClient,
) -> None:
    # Nested page sizes from variables multiply before variables are checked: 2**60 squared
    # is a cost orjson cannot write (the fuzz test found it as a 500).
    query = """query($first: Int) { customer(id: "1") { orders(first: $first) { edges { node {
        customer { orders(first: $first) { edges { node { id } } } } } } } } }"""
    response = await client.post("/graphql", json={"query": query, "variables": {"first": 2**60}})
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["measured"] == 2**53 - 1
    assert "over the agent budget of 20,000" in error["message"]


NUL_INPUTS = {
    "lookup email": ("query($v: String) { customerLookup(email: $v) { __typename } }", "a\0@x.com"),
    "batch emails": ("query($v: [String!]!) { customersByEmails(emails: $v) { id } }", ["a\0@x"]),
    "search": ("query($v: String!) { searchCustomers(query: $v) { edges { cursor } } }", "ab\0c"),
    "representation": (
        "query($v: [_Any!]!) { _entities(representations: $v) { __typename } }",
        [{"__typename": "Customer", "email": "a\0@x.com"}],
    ),
    "contact name": (
        'mutation($v: String) { updateCustomerContact(input: {customerId: "1", firstName: $v})'
        " { __typename } }",
        "Ada\0",
    ),
    "address line": (
        'mutation($v: String!) { setAddress(input: {customerId: "1", kind: HOME, line1: $v, '
        'city: "London", postalCode: "EC1A", country: "GB"}) { __typename } }',
        "1\0 Street",
    ),
    "interaction attribute key": (
        'mutation($v: String!) { recordInteraction(input: {customerId: "1", type: CALL, '
        'channel: PHONE, attributes: [{key: $v, value: "x"}]}) { __typename } }',
        "k\0",
    ),
    "a literal": ('{ customerLookup(email: "a\\u0000@x.com") { __typename } }', None),
}


@pytest.mark.parametrize("case", list(NUL_INPUTS))
async def test_a_nul_character_in_any_input_is_refused_before_it_runs(
    client: httpx.AsyncClient, case: str
) -> None:
    # PostgreSQL text and MongoDB keys cannot hold NUL: it failed in the store, unexpected.
    query, value = NUL_INPUTS[case]
    response = await client.post(
        "/graphql", json={"query": query, "variables": None if value is None else {"v": value}}
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "NUL character (U+0000)" in error["message"]
    assert "data" not in response.json()


async def test_rate_limit_answers_429_with_retry_after_then_recovers(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_principal": "3 per 2 seconds"})
    async with running_app(limited) as (_, http):
        statuses = [(await http.post("/graphql", json=TYPENAME)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = await http.post("/graphql", json=TYPENAME)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 3
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # Another principal has its own allowance.
        other = await http.post("/graphql", json=TYPENAME, headers=bearer(Role.ANALYST))
        assert other.status_code == 200
        await asyncio.sleep(int(refused.headers["retry-after"]) + 0.2)
        assert (await http.post("/graphql", json=TYPENAME)).status_code == 200


async def test_automatic_persisted_queries_register_then_run_by_hash(
    client: httpx.AsyncClient,
) -> None:
    query = '{ customer(id: "2") { id firstName } }'
    sha = hashlib.sha256(query.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha}}
    unknown = await client.post("/graphql", json={"extensions": extensions})
    assert unknown.json()["errors"][0]["message"] == "PersistedQueryNotFound"
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = await client.post("/graphql", json={"query": query, "extensions": extensions})
    assert registered.json()["data"]["customer"]["id"] == "2"
    by_hash = await client.get(
        "/graphql",
        params={"extensions": f'{{"persistedQuery":{{"version":1,"sha256Hash":"{sha}"}}}}'},
    )
    assert by_hash.json() == registered.json()
    wrong = await client.post(
        "/graphql", json={"query": "{ __typename }", "extensions": extensions}
    )
    assert wrong.status_code == 400
    assert "not the SHA-256" in wrong.json()["errors"][0]["message"]


async def trust(app: Starlette, query: str, name: str) -> str:
    """Register `query` as `c360 documents add` does, once the app has forgotten it was unknown;
    returns its hash."""
    sha = await add_document(
        engine=app.state.connections.engine,
        body=query,
        name=name,
        schema=app.state.guard.admission.schema,
    )
    await asyncio.sleep(2.1)  # the unknown-hash memory lapses
    return sha


async def test_customers_may_only_run_trusted_documents_in_allow_list_mode(
    settings: Settings,
) -> None:
    allow_list = settings.model_copy(update={"trusted_documents_only": True})
    me = bearer(Role.CUSTOMER, subject="3")
    query = "query Me($id: ID!) { customer(id: $id) { id email } }"
    async with running_app(allow_list) as (app, http):
        refused = await http.post(
            "/graphql", json={"query": query, "variables": {"id": "3"}}, headers=me
        )
        assert refused.json()["errors"][0]["extensions"]["code"] == "DOCUMENT_NOT_TRUSTED"
        sha = await trust(app, query, f"me-{allow_list.mongo_database}")
        extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha}}
        by_hash = await http.post(
            "/graphql", json={"extensions": extensions, "variables": {"id": "3"}}, headers=me
        )
        assert by_hash.json()["data"]["customer"]["id"] == "3"
        # The allow-list binds customers only: an agent still sends any document.
        agent = await http.post("/graphql", json={"query": query, "variables": {"id": "3"}})
        assert agent.json()["data"]["customer"]["id"] == "3"


async def test_body_size_and_batches(settings: Settings, client: httpx.AsyncClient) -> None:
    big = await client.post(
        "/graphql",
        content=b'{"query": "{ __typename }", "pad": "' + b"x" * 110_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413
    off = await client.post("/graphql", json=[TYPENAME, TYPENAME])
    assert off.status_code == 400
    assert "turned off" in off.json()["errors"][0]["message"]
    batching = settings.model_copy(update={"batch_enabled": True, "batch_max": 2})
    async with running_app(batching) as (_, http):
        both = await http.post("/graphql", json=[TYPENAME, ME])
        assert both.json() == [
            {"data": {"__typename": "Query"}},
            {"data": {"customer": {"id": "1"}}},
        ]
        assert (await http.post("/graphql", json=[TYPENAME] * 3)).status_code == 400


async def test_an_operation_over_the_execution_timeout_is_stopped(
    settings: Settings, vendor_faults: Simulator
) -> None:
    vendor_faults.set_faults("loyalty", latency_ms=400)
    quick = settings.model_copy(update={"execution_timeout": 0.2})
    async with running_app(quick) as (_, http):
        response = await http.post(
            "/graphql", json={"query": '{ customer(id: "1") { loyalty { tier } } }'}
        )
    assert response.status_code == 504
    assert response.json()["errors"][0]["extensions"]["code"] == "TIMEOUT"


async def test_csrf_only_json_posts_and_no_mutation_over_get(client: httpx.AsyncClient) -> None:
    for content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
    ):
        response = await client.post(
            "/graphql", content=b"query={__typename}", headers={"content-type": content_type}
        )
        assert response.status_code == 415, content_type
    mutation = (
        'mutation { setConsent(input: {customerId: "1", channel: SMS, granted: true}) '
        "{ __typename } }"
    )
    response = await client.get("/graphql", params={"query": mutation})
    assert response.status_code == 405


async def test_cors_allows_only_configured_origins(settings: Settings) -> None:
    cors = settings.model_copy(update={"cors_origins": ["https://shop.example"]})
    async with running_app(cors) as (_, http):
        preflight = {"access-control-request-method": "POST"}
        allowed = await http.options(
            "/graphql", headers=preflight | {"origin": "https://shop.example"}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        refused = await http.options(
            "/graphql", headers=preflight | {"origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in refused.headers


def test_production_refuses_the_development_secret(settings: Settings) -> None:
    from api.app import create_app

    production = settings.model_copy(update={"env": Environment.PRODUCTION})
    with pytest.raises(UnsafeConfigurationError, match="development JWT secret"):
        create_app(production)


async def test_production_refuses_to_start_with_no_auth_configured(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite'}"
    await asyncio.to_thread(upgrade, url)
    production = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.PRODUCTION,
        auth_jwt_secret=None,
        database_url=url,
    )
    engine = create_engine(url)
    try:
        with pytest.raises(UnsafeConfigurationError, match="no authentication configured"):
            await refuse_production_without_auth(production, engine)
        # One API key is enough to start.
        await create_key(engine=engine, name="gateway", roles=[Role.SERVICE])
        await refuse_production_without_auth(production, engine)
    finally:
        await engine.dispose()


async def test_production_hides_introspection_and_suggestions_from_agents(
    settings: Settings,
) -> None:
    secret = "a-production-secret-that-is-long-enough-0123456789"
    production = settings.model_copy(
        update={
            "env": Environment.PRODUCTION,
            "auth_jwt_secret": SecretStr(secret),
            "metrics_public": True,
        }
    )
    agent = {"authorization": "Bearer " + _signed(_claims(), secret)}
    analyst = {"authorization": "Bearer " + _signed(_claims(roles=["analyst"]), secret)}
    introspect = {"query": "{ __schema { queryType { name } } }"}
    typo = {"query": '{ customer(id: "1") { emial } }'}
    async with running_app(production) as (_, http):
        refused = await http.post("/graphql", json=introspect, headers=agent)
        assert "introspection" in refused.json()["errors"][0]["message"]
        assert "data" not in refused.json()
        allowed = await http.post("/graphql", json=introspect, headers=analyst)
        assert allowed.json()["data"]["__schema"]["queryType"]["name"] == "Query"
        hidden = (await http.post("/graphql", json=typo, headers=agent)).json()
        assert "Did you mean" not in hidden["errors"][0]["message"]
        shown = (await http.post("/graphql", json=typo, headers=analyst)).json()
        assert "Did you mean" in shown["errors"][0]["message"]
        ide = await http.get("/graphql", headers={"accept": "text/html"} | agent)
        assert ide.status_code == 403
        ide = await http.get("/graphql", headers={"accept": "text/html"} | analyst)
        assert ide.status_code == 200


async def test_an_api_key_authenticates_over_http(settings: Settings) -> None:
    from api.keys import create_key, revoke_key

    quick = settings.model_copy(update={"auth_key_cache_seconds": 0.1})
    async with (
        running_app(quick) as (app, _),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        engine = app.state.connections.engine
        name = f"svc-{token()[-12:]}"
        _, key = await create_key(
            engine=engine, name=name, roles=[Role.SERVICE], scopes=["customers:read"]
        )
        for headers in ({"x-api-key": key}, {"authorization": f"Bearer {key}"}):
            response = await http.post("/graphql", json=ME, headers=headers)
            assert response.json() == {"data": {"customer": {"id": "1"}}}
        both = await http.post("/graphql", json=ME, headers={"x-api-key": key} | AGENT)
        assert both.status_code == 401
        assert await revoke_key(engine=engine, name=name)
        await asyncio.sleep(0.2)
        response = await http.post("/graphql", json=ME, headers={"x-api-key": key})
        assert response.status_code == 401
        assert "revoked" in response.json()["errors"][0]["message"]


async def test_only_publishers_may_post_events(app: Starlette) -> None:
    transport = httpx.ASGITransport(app=app)
    event = {"query": "not an event"}
    async with httpx.AsyncClient(transport=transport, base_url="http://c360.test") as http:
        anonymous = await http.post("/events", json=event)
        assert anonymous.status_code == 401
        agent = await http.post("/events", json=event, headers=AGENT)
        assert agent.status_code == 403
        [error] = agent.json()["errors"]
        assert "events:write" in error["message"] and error["extensions"]["code"] == "FORBIDDEN"
        bad = await http.post("/events", json=event, headers={"authorization": "Bearer nope"})
        assert bad.status_code == 401


async def test_guessing_credentials_spends_the_address_allowance(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_ip": "3/minute"})
    async with running_app(limited) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://c360.test") as http:
            guesses = [
                (await http.post("/graphql", json=ME, headers={"x-api-key": f"c360_{n}_x"}))
                for n in range(4)
            ]
    assert [r.status_code for r in guesses] == [401, 401, 401, 429]
    assert int(guesses[-1].headers["retry-after"]) >= 1
