"""Automatic persisted queries while Redis is away: kept in this instance, never an error."""

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
