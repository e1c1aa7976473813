"""/metrics exposes request counts, latencies and driver-level round trips."""

from __future__ import annotations

import re

import httpx
import pytest
from pydantic import SecretStr

from api.app import create_app
from api.settings import Environment, Settings
from api.startup import UnsafeConfigurationError
from tests.conftest import running_app
from tests.queries import AGENT_QUERY


def sample(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$", text, re.M)
    assert match, f"{name}{{{labels}}} not in /metrics"
    return float(match.group(1))


async def test_metrics_count_requests_and_round_trips(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    response = await client.post("/graphql", json={"query": AGENT_QUERY, "variables": {"id": "2"}})
    assert response.status_code == 200
    after = await client.get("/metrics")

    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    for source in ("sql", "mongo", "loyalty"):
        name = "c360_source_round_trips_total"
        label = f'source="{source}"'
        assert sample(text, name, label) - sample(before, name, label) >= 1
    requests = 'path="/graphql",status="200"'
    assert sample(text, "c360_http_requests_total", requests) >= 1
    assert 'c360_http_request_duration_seconds_bucket{le="0.001",path="/graphql"}' in text


async def test_unknown_paths_share_one_label(client: httpx.AsyncClient) -> None:
    await client.get("/wp-admin/setup.php")
    text = (await client.get("/metrics")).text
    assert 'path="other",status="404"' in text
    assert "wp-admin" not in text


async def test_a_metrics_token_is_required_when_set(settings: Settings) -> None:
    token = "scraper-token-0123456789"
    guarded = settings.model_copy(update={"metrics_token": SecretStr(token)})
    async with running_app(guarded) as (_, http):
        missing = await http.get("/metrics")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "c360_http_requests" not in missing.text
        wrong = await http.get("/metrics", headers={"authorization": f"Bearer {token}x"})
        assert wrong.status_code == 401
        right = await http.get("/metrics", headers={"authorization": f"Bearer {token}"})
        assert right.status_code == 200
        assert "c360_http_requests_total" in right.text


def test_production_refuses_open_metrics_unless_opened(settings: Settings) -> None:
    production = settings.model_copy(
        update={"env": Environment.PRODUCTION, "auth_jwt_secret": SecretStr("s" * 32)}
    )
    with pytest.raises(UnsafeConfigurationError, match="/metrics open"):
        create_app(production)
    create_app(production.model_copy(update={"metrics_public": True}))
    create_app(production.model_copy(update={"metrics_token": SecretStr("scraper-token")}))


async def test_only_an_admitted_operation_of_a_known_caller_takes_an_operation_label(
    client: httpx.AsyncClient,
) -> None:
    anonymous = {"authorization": ""}
    await client.post(
        "/graphql", json={"query": "query Stranger1 { __typename }"}, headers=anonymous
    )
    await client.post("/graphql", json={"query": "query Invalid1 { nope }"})
    assert (await client.post("/graphql", json={"query": "query Known1 { __typename }"})).json()
    text = (await client.get("/metrics")).text
    name = "c360_graphql_operation_duration_seconds_count"
    assert sample(text, name, 'operation="Known1"') >= 1
    assert 'operation="Stranger1"' not in text and 'operation="Invalid1"' not in text
