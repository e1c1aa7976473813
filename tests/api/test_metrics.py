"""/metrics exposes request counts, latencies and driver-level round trips."""

from __future__ import annotations

import re

import httpx

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
