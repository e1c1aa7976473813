"""Rate limits per principal and per address: in this process, shared through the real Redis,
and in this process again while Redis is away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from api.ratelimit import RateLimiter
from api.settings import Settings
from sources.net import free_port
from tests.conftest import REDIS_KINDS, redis_url_of
from tests.services import silent_server

MakeLimiter = Callable[..., RateLimiter]


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rate_limit_principal": "3/2 second",
        "rate_limit_ip": "5/2 second",
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
async def limiters() -> AsyncIterator[MakeLimiter]:
    """Builds limiters from settings overrides; closes them all afterwards."""
    made: list[RateLimiter] = []

    def make(**overrides: Any) -> RateLimiter:
        limiter = RateLimiter(_settings(**overrides))
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


@pytest.fixture(params=["memory", *REDIS_KINDS])
def make_limiter(
    request: pytest.FixtureRequest, limiters: MakeLimiter, redis_namespace: str
) -> MakeLimiter:
    """Limiters counting in this process, then in the real Redis, then in a Redis Cluster."""
    if request.param == "memory":
        return limiters
    redis_url = redis_url_of(request, request.param)

    def make(**overrides: Any) -> RateLimiter:
        return limiters(redis_url=redis_url, cache_namespace=redis_namespace, **overrides)

    return make


async def test_n_requests_then_refused_until_the_window_frees_up(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter()
    for _ in range(3):
        assert (await limiter.hit(principal="jwt:jane", ip=None)).allowed
    refused = await limiter.hit(principal="jwt:jane", ip=None)
    assert not refused.allowed
    assert refused.limit == "principal"
    # A sliding window counter frees a slot within two windows (the spent one's weight fades
    # through the next), and the advice must be enough: the next request after it passes.
    assert 1 <= refused.retry_after <= 4
    await asyncio.sleep(refused.retry_after)
    assert (await limiter.hit(principal="jwt:jane", ip=None)).allowed


async def test_the_address_limit_holds_whoever_asks(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    for n in range(5):
        assert (await limiter.hit(principal=f"jwt:user{n}", ip="10.0.0.1")).allowed
    refused = await limiter.hit(principal="jwt:someone-else", ip="10.0.0.1")
    assert (refused.allowed, refused.limit) == (False, "ip")
    assert refused.retry_after >= 1


async def test_principals_and_addresses_are_counted_apart(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    for _ in range(3):
        assert (await limiter.hit(principal="jwt:jane", ip="10.0.0.1")).allowed
    # Jane is spent wherever she asks from; her address and other principals are not.
    refused = await limiter.hit(principal="jwt:jane", ip="10.0.0.2")
    assert (refused.allowed, refused.limit) == (False, "principal")
    assert (await limiter.hit(principal="jwt:john", ip="10.0.0.1")).allowed
    assert (await limiter.hit(principal=None, ip="10.0.0.1")).allowed


async def test_allowed_again_once_retry_after_has_passed(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_limit_principal="2/1 second")
    for _ in range(2):
        assert (await limiter.hit(principal="jwt:jane", ip=None)).allowed
    refused = await limiter.hit(principal="jwt:jane", ip=None)
    assert not refused.allowed and 1 <= refused.retry_after <= 2
    await asyncio.sleep(refused.retry_after + 0.05)
    assert (await limiter.hit(principal="jwt:jane", ip=None)).allowed


async def test_nothing_to_count_is_allowed(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(rate_limit_principal="1/minute", rate_limit_ip="1/minute")
    for _ in range(3):
        assert (await limiter.hit(principal=None, ip=None)).allowed


async def test_disabled_allows_everything_and_touches_nothing(limiters: MakeLimiter) -> None:
    # Were it counting anywhere, Redis or its in-process fallback, the second hit would fail.
    closed = f"redis://127.0.0.1:{free_port()}/0"
    limiter = limiters(rate_limit_enabled=False, redis_url=closed, rate_limit_ip="1/minute")
    for _ in range(20):
        assert (await limiter.hit(principal="jwt:jane", ip="10.0.0.1")).allowed


async def test_instances_sharing_redis_share_counts(
    limiters: MakeLimiter, redis_url: str, redis_namespace: str
) -> None:
    first, second = (
        limiters(redis_url=redis_url, cache_namespace=redis_namespace) for _ in range(2)
    )
    assert (await first.hit(principal="jwt:jane", ip=None)).allowed
    assert (await first.hit(principal="jwt:jane", ip=None)).allowed
    assert (await second.hit(principal="jwt:jane", ip=None)).allowed
    assert not (await second.hit(principal="jwt:jane", ip=None)).allowed
    assert not (await first.hit(principal="jwt:jane", ip=None)).allowed
    # Another namespace is another deployment: its counts are its own.
    other = limiters(redis_url=redis_url, cache_namespace=f"{redis_namespace}-other")
    assert (await other.hit(principal="jwt:jane", ip=None)).allowed
    redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{redis_namespace}:ratelimit:*")]
        other_keys = [key async for key in redis.scan_iter(match=f"{redis_namespace}-other:*")]
        await redis.delete(*other_keys)
    finally:
        await redis.aclose()
    assert len(keys) == 1


async def test_unreachable_redis_falls_back_to_this_process_and_still_limits(
    limiters: MakeLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="api.ratelimit")
    limiter = limiters(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    for _ in range(3):
        assert (await limiter.hit(principal="jwt:jane", ip="10.0.0.1")).allowed
    refused = await limiter.hit(principal="jwt:jane", ip="10.0.0.1")
    assert (refused.allowed, refused.limit) == (False, "principal")
    assert refused.retry_after >= 1
    warnings = [r for r in caplog.records if r.name == "api.ratelimit"]
    assert len(warnings) == 1, "one warning per outage, not one per request"
    assert "Redis down" in warnings[0].getMessage()


async def test_a_silent_redis_costs_one_timeout_then_is_bypassed_until_the_breaker_closes(
    limiters: MakeLimiter,
) -> None:
    async with silent_server() as silent:
        limiter = limiters(
            redis_url=f"redis://127.0.0.1:{silent.port}/0",
            redis_timeout=0.1,
            redis_breaker_seconds=0.3,
        )
        assert (await limiter.hit(principal="jwt:jane", ip="10.0.0.1")).allowed
        tried = silent.connections
        assert tried >= 1
        for _ in range(2):
            assert (await limiter.hit(principal="jwt:jane", ip="10.0.0.1")).allowed
        assert not (await limiter.hit(principal="jwt:jane", ip="10.0.0.1")).allowed
        assert silent.connections == tried, "the open breaker keeps requests away from Redis"
        await asyncio.sleep(0.35)
        assert not (await limiter.hit(principal="jwt:jane", ip="10.0.0.1")).allowed
        assert silent.connections > tried, "once the breaker closes, Redis is tried again"
