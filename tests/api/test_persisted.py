"""Automatic persisted queries: shared by instances through Redis (one or a cluster), and
while Redis is away kept in this instance, never an error."""

from __future__ import annotations

import hashlib
import logging

import pytest

from api.persisted import PersistedQueries
from tests.services import silent_server

QUERY = "{ __typename }"
SHA = hashlib.sha256(QUERY.encode()).hexdigest()


async def test_a_silent_redis_costs_one_try_per_breaker_period_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="api.persisted")
    async with silent_server() as silent:
        persisted = PersistedQueries(
            f"redis://127.0.0.1:{silent.port}/0",
            namespace="c360test",
            ttl=60,
            timeout=0.1,
            breaker_seconds=60,
        )
        try:
            await persisted.put(SHA, QUERY)  # Redis does not answer: kept here
            tried = silent.connections
            assert tried >= 1
            assert await persisted.get(SHA) == QUERY
            for n in range(5):
                assert await persisted.get(f"{n:064x}") is None  # unknown: no error either
            assert silent.connections == tried, "the open breaker keeps calls away from Redis"
        finally:
            await persisted.close()
    [line] = [r for r in caplog.records if r.name == "api.persisted"]
    assert "persisted queries: Redis down" in line.getMessage() and not line.exc_info


async def test_a_query_registered_through_one_instance_is_known_to_another(
    any_redis_url: str, redis_namespace: str
) -> None:
    one, another = (
        PersistedQueries(
            any_redis_url, namespace=redis_namespace, ttl=60, timeout=1.0, breaker_seconds=60
        )
        for _ in range(2)
    )
    try:
        assert await another.get(SHA) is None
        await one.put(SHA, QUERY)
        assert await another.get(SHA) == QUERY
    finally:
        await one.close()
        await another.close()
