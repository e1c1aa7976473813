"""Subscriptions per principal across sockets, and WebSocket refusals that say what happened."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.app import create_app
from api.settings import Settings
from api.subscriptions import _ACQUIRE, PrincipalSubscriptions
from domain.principal import Role
from sources.events.hub import Hub
from sources.net import free_port
from tests.auth import bearer
from tests.conftest import serving
from tests.services import stalling_proxy
from tests.waits import until
from tests.ws.test_subscriptions import SUBSCRIBE, next_message

CAP = 3


@contextlib.asynccontextmanager
async def limited_server(settings: Settings, **update: Any) -> AsyncIterator[tuple[str, Starlette]]:
    """An app of its own over the test stores, with `update` to its settings, on a real port."""
    # Its relay stays off: the session app's relay publishes the outbox of the shared stores.
    application = create_app(settings.model_copy(update={"relay_enabled": False, **update}))
    async with application.router.lifespan_context(application), serving(application) as url:
        yield url, application


@contextlib.asynccontextmanager
async def socket(base_url: str, credential: dict[str, str]) -> AsyncIterator[ClientConnection]:
    """An acknowledged graphql-transport-ws connection of `credential`."""
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": credential}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        yield ws


async def subscribe(ws: ClientConnection, operation: str) -> None:
    payload = {"query": SUBSCRIBE, "variables": {"id": "1"}}
    await ws.send(json.dumps({"id": operation, "type": "subscribe", "payload": payload}))


async def still_open(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "ping"}))
    assert (await next_message(ws))["type"] == "pong"


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        await next_message(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def agent() -> tuple[dict[str, str], str]:
    """A credential of a principal no other test uses, and the key its limits count it by."""
    subject = f"wsguard-{uuid.uuid4().hex[:8]}"
    return bearer(Role.AGENT, subject=subject), f"jwt:{subject}"


async def test_a_principal_past_its_cap_across_sockets_is_closed_with_4429(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    credential, key = agent()
    async with limited_server(settings, limit_subscriptions_per_principal=CAP) as (url, app):
        hub: Hub = app.state.connections.hub  # this app's subscribers are this test's
        async with socket(url, credential) as first, socket(url, credential) as second:
            await subscribe(first, "a")
            await subscribe(first, "b")
            await until(lambda: hub.subscribers == 2, "two live subscriptions")
            await subscribe(second, "c")
            await until(lambda: hub.subscribers == CAP, "three live subscriptions")
            async with socket(url, credential) as third:
                await subscribe(third, "d")
                assert await closed_with(third) == (
                    4429,
                    f"too many subscriptions: at most {CAP} per principal",
                )
            # The sockets under the cap keep theirs.
            await still_open(first)
            await still_open(second)
            assert hub.subscribers == CAP

            # One completed, the principal may subscribe again, on any socket.
            await first.send(json.dumps({"id": "a", "type": "complete"}))
            await until(lambda: hub.subscribers == CAP - 1, "the completed one ended")
            async with socket(url, credential) as fourth:
                await subscribe(fourth, "e")
                await until(lambda: hub.subscribers == CAP, "a new one accepted")
                await still_open(fourth)
        # Closed sockets release every subscription they ran.
        counted: PrincipalSubscriptions = app.state.guard.subscriptions
        await until(lambda: counted.held(key) == 0, "all released on close")
    # The refused subscription ended quietly: nothing was sent on the closed socket.
    assert [r.getMessage() for r in caplog.records if r.name == "strawberry.ws.task"] == []


async def test_a_rate_limited_socket_is_told_apart_from_a_bad_credential(
    settings: Settings,
) -> None:
    credential, _ = agent()
    # Each connection_init counts against its address.
    async with limited_server(settings, rate_limit_ip="2/minute") as (url, _app):
        ws_url = url.replace("http://", "ws://") + "/graphql"

        async def init(payload: dict[str, str]) -> tuple[int, str]:
            async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
                await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
                return await closed_with(ws)

        assert await init({"authorization": "Bearer not-a-token"}) == (4403, "Forbidden")
        async with socket(url, credential):
            pass
        code, reason = await init(credential)
    assert code == 4429
    assert reason.startswith("rate limited, retry after ")
    assert int(reason.removeprefix("rate limited, retry after ").removesuffix(" s")) >= 1


async def test_the_cap_holds_across_instances_sharing_redis(
    settings: Settings, redis_url: str, redis_namespace: str
) -> None:
    credential, key = agent()
    shared = {
        "limit_subscriptions_per_principal": CAP,
        "redis_url": redis_url,
        "cache_namespace": redis_namespace,
        "redis_timeout": 1.0,  # a busy test machine must not trip the breaker
    }
    redis = Redis.from_url(redis_url)

    async def in_redis(count: int) -> bool:
        return int(await redis.zcard(f"{redis_namespace}:subscriptions:{key}")) == count

    try:
        async with (
            limited_server(settings, **shared) as (a, app_a),
            limited_server(settings, **shared) as (b, app_b),
            socket(a, credential) as on_a,
            socket(b, credential) as on_b,
        ):
            await subscribe(on_a, "a")
            await subscribe(on_a, "b")
            await subscribe(on_b, "c")
            await until(lambda: app_a.state.connections.hub.subscribers == 2, "two on a")
            await until(lambda: app_b.state.connections.hub.subscribers == 1, "one on b")
            assert await in_redis(CAP)
            async with socket(b, credential) as more:
                await subscribe(more, "d")
                code, reason = await closed_with(more)
            assert (code, reason.split(":")[0]) == (4429, "too many subscriptions")

            await on_a.send(json.dumps({"id": "a", "type": "complete"}))
            await until(lambda: in_redis(CAP - 1), "released in Redis")
            await subscribe(on_b, "e")
            await until(lambda: app_b.state.connections.hub.subscribers == 2, "two on b")
            assert await in_redis(CAP)
            await still_open(on_b)
        assert await in_redis(0)  # every socket closed: nothing left behind
    finally:
        await redis.aclose()


async def test_an_instance_that_dies_leaks_no_subscriptions(
    settings: Settings, any_redis_url: str, redis_namespace: str
) -> None:
    shared = settings.model_copy(
        update={
            "limit_subscriptions_per_principal": 1,
            "redis_url": any_redis_url,
            "cache_namespace": redis_namespace,
            "redis_timeout": 1.0,
        }
    )
    lease = 2.0
    alive = PrincipalSubscriptions(shared, lease_seconds=lease)
    other = PrincipalSubscriptions(shared, lease_seconds=lease)
    alive.start()
    # Two principals: two keys, renewed together (in two slots, on a cluster).
    principals = ["jwt:someone", "jwt:someone-else"]
    try:
        for principal in principals:
            assert await alive.acquire(principal) is not None
        # Renewed while its instance lives: held past its first lease.
        await asyncio.sleep(lease * 1.5)
        for principal in principals:
            assert await other.acquire(principal) is None
        await alive.close()  # dies: stops renewing, removes nothing
        await until(lambda: other.acquire("jwt:someone"), "its entry lapsed", patience=lease * 3)
    finally:
        await alive.close()
        await other.close()


async def test_without_redis_each_instance_counts_its_own(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = settings.model_copy(
        update={
            "limit_subscriptions_per_principal": 2,
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        }
    )
    counted = PrincipalSubscriptions(nowhere)
    try:
        first = await counted.acquire("jwt:someone")
        assert first is not None
        assert await counted.acquire("jwt:someone") is not None
        assert await counted.acquire("jwt:someone") is None
        await counted.release("jwt:someone", first)
        assert await counted.acquire("jwt:someone") is not None
    finally:
        await counted.close()
    assert [r.message for r in caplog.records if "Redis down" in r.message] != []


async def test_subscribes_sent_together_keep_to_the_socket_cap_with_redis(
    settings: Settings, redis_url: str, redis_namespace: str
) -> None:
    credential, key = agent()
    async with limited_server(
        settings,
        redis_url=redis_url,
        cache_namespace=redis_namespace,
        redis_timeout=1.0,
        websocket_max_subscriptions=2,
        limit_subscriptions_per_principal=50,
    ) as (url, app):
        hub: Hub = app.state.connections.hub
        async with socket(url, credential) as ws:
            # Back to back: each is checked while the others are still being counted in Redis.
            for n in range(12):
                await subscribe(ws, f"s{n}")
            refused, completed = set(), set()
            while len(refused) < 10 or len(completed) < 10:
                message = await next_message(ws)
                if message["type"] == "complete":
                    completed.add(message["id"])
                    continue
                errors = message["payload"]["errors"]
                assert errors[0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS", message
                refused.add(message["id"])
            assert refused == completed
            await until(lambda: hub.subscribers == 2, "two live subscriptions")
            await still_open(ws)
            assert hub.subscribers == 2
            assert app.state.guard.subscriptions.held(key) == 2


async def test_a_subscription_cancelled_while_counted_leaves_nothing_in_redis(
    settings: Settings, redis_url: str, redis_namespace: str
) -> None:
    credential, key = agent()
    entries = f"{redis_namespace}:subscriptions:{key}"
    target = urlsplit(redis_url)
    redis = Redis.from_url(redis_url)
    try:
        # Loaded already: the stalled call runs its script at once, not after a NOSCRIPT reply.
        await redis.script_load(_ACQUIRE)
        async with (
            stalling_proxy(target.hostname or "", target.port or 6379, entries.encode()) as proxy,
            limited_server(
                settings,
                redis_url=f"redis://127.0.0.1:{proxy.port}{target.path}",
                cache_namespace=redis_namespace,
                # Longer than the test waits: the acquire in flight is cut short by the socket's
                # close, not by its deadline.
                redis_timeout=4.0,
                rate_limit_enabled=False,
            ) as (url, app),
        ):
            async with socket(url, credential) as ws:
                await subscribe(ws, "a")
                # Redis added the entry; its answer has not reached c360.
                await until(lambda: proxy.stalled == 1, "the acquire sent")
                await until(lambda: _count(redis, entries, 1), "the entry added in Redis")
            await until(lambda: _count(redis, entries, 0), "the entry removed", patience=6.0)
            assert app.state.connections.hub.subscribers == 0
            assert app.state.guard.subscriptions.held(key) == 0
    finally:
        await redis.aclose()


async def _count(redis: Redis, key: str, expected: int) -> bool:
    return int(await redis.zcard(key)) == expected
