"""WebSocket credentials: refused before any subscription, closed when they expire."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.settings import Settings
from api.tokens import mint_token
from domain.principal import Role
from tests.auth import AGENT, bearer
from tests.http.test_guards import BAD_TOKENS
from tests.ws.test_subscriptions import SUBSCRIBE, next_message


def _url(live_server: str) -> str:
    return live_server.replace("http://", "ws://") + "/graphql"


async def _init_closes_with(live_server: str, payload: dict[str, str]) -> int:
    async with connect(_url(live_server), subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


@pytest.mark.parametrize("case", [*BAD_TOKENS, "missing"])
async def test_a_bad_or_missing_credential_closes_with_4403(live_server: str, case: str) -> None:
    payload = {} if case == "missing" else {"authorization": f"Bearer {BAD_TOKENS[case][0]}"}
    assert await _init_closes_with(live_server, payload) == 4403


async def test_an_expired_token_ends_the_connection(live_server: str) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    # Expiring so that, with the leeway the server allows, it is good for two more seconds:
    # long enough to subscribe, then the server must hang up.
    minted_at = time.monotonic()
    short = mint_token(
        settings,
        subject="short-lived",
        roles=[Role.AGENT],
        lifetime=dt.timedelta(seconds=2),
        now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=settings.auth_jwt_leeway_seconds),
    )
    async with connect(_url(live_server), subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {short}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": {"id": "1"}},
                }
            )
        )
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                async with asyncio.timeout(10):
                    await ws.recv()
    # Open until the token's expiry, then closed for it. The expiry is in whole seconds (up to
    # one sooner than two from minting); counted from the minting, not from the ack, which a
    # busy machine may send most of a second later.
    assert time.monotonic() - minted_at >= 1.0
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403
    assert closed.value.rcvd.reason == "credential expired"


async def test_a_customer_may_subscribe_only_to_itself(live_server: str) -> None:
    me = bearer(Role.CUSTOMER, subject="5")
    async with connect(_url(live_server), subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": me}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "other",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": {"id": "6"}},
                }
            )
        )
        message = await next_message(ws)
        assert message["id"] == "other"
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_limits_apply_to_websocket_operations(live_server: str) -> None:
    deep = (
        'subscription { customerChanged(customerId: "1") { customer { orders { edges { node {'
        " customer { orders { edges { node { customer { orders { edges { node { id } } } } } } }"
        " } } } } } } }"
    )
    async with connect(_url(live_server), subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": AGENT}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "d", "type": "subscribe", "payload": {"query": deep}}))
        message = await next_message(ws)
        assert message["type"] == "error"
        assert "levels deep" in message["payload"][0]["message"]


async def test_a_nul_character_is_refused_on_websocket_too(live_server: str) -> None:
    subscription = "subscription($id: ID!) { customerChanged(customerId: $id) { eventId } }"
    async with connect(_url(live_server), subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": AGENT}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": subscription, "variables": {"id": "1\u0000"}}
        await ws.send(json.dumps({"id": "n", "type": "subscribe", "payload": payload}))
        message = await next_message(ws)
        assert message["type"] == "error"
        [error] = message["payload"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT"}
        assert "NUL character (U+0000)" in error["message"]


async def test_a_foreign_origin_is_refused_at_the_handshake(live_server: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            _url(live_server),
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            origin="https://evil.example",  # type: ignore[arg-type]
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_the_token_limit_bounds_websocket_documents(live_server: str) -> None:
    huge = "subscription { " + "a " * 5_001 + "}"
    async with connect(_url(live_server), subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": AGENT}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "t", "type": "subscribe", "payload": {"query": huge}}))
        # Strawberry answers a document it cannot parse by closing with 4400 (the protocol's
        # "bad request"), after reading no more than the limit.
        with pytest.raises(ConnectionClosed) as closed:
            await next_message(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400
    assert "more than 5000 tokens" in closed.value.rcvd.reason
