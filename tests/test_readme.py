"""Every request the README shows runs as written against the demo data and shows what the
README says it shows: the customer, the second page, the lookup hit, the change, the event
delivered. The curl examples run in bash with curl, as a reader pastes them ($TOKEN and
$SERVICE_TOKEN the demo tokens `make run` prints); the GraphQL documents go over HTTP (and
the subscription over WebSocket) with the variables the README names beside them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from api import ide
from api.demo import demo_tokens
from api.settings import Settings
from tests import services
from tests.conftest import served_over_own_stores
from tests.ws.test_subscriptions import CONTACT

README = Path(__file__).resolve().parents[1] / "README.md"
SERVED_AT = "http://127.0.0.1:8000"
# The first 30 customers of the demo data: customer 7 (Ada Larsen) and 8 (Emma Jensen) are
# the examples' (the seed is sequential, so these are `make run`'s customers too).
CUSTOMERS = 30
PROTOCOL = Subprotocol("graphql-transport-ws")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    kind: str  # sh or graphql
    text: str
    line: int

    @property
    def key(self) -> str:
        """Its first line: what the checks below know it by."""
        return self.text.splitlines()[0].strip()


def readme_examples() -> list[Example]:
    """Every request in the README: its GraphQL documents and its curl commands."""
    text = README.read_text(encoding="utf-8")
    found = []
    for block in FENCE.finditer(text):
        kind, body = block.group(1), block.group(2)
        if kind == "graphql" or (kind == "sh" and "curl " in body):
            found.append(Example(kind, body, text.count("\n", 0, block.start()) + 1))
    return found


@dataclass(frozen=True)
class Demo:
    url: str
    tokens: dict[str, str]
    http: httpx.AsyncClient  # as the agent

    async def graphql(
        self, document: str, variables: dict[str, Any] | None = None, operation: str | None = None
    ) -> dict[str, Any]:
        body = {"query": document, "variables": variables, "operationName": operation}
        answer: dict[str, Any] = (await self.http.post("/graphql", json=body)).json()
        assert "errors" not in answer, answer
        data: dict[str, Any] = answer["data"]
        return data

    async def shell(self, example: Example) -> Any:
        """The command as written, pointed at this server; its output as JSON."""
        if shutil.which("curl") is None:
            services.unavailable("curl", "the README's examples are curl commands")
        command = example.text.replace(SERVED_AT, self.url)
        env = {
            **os.environ,
            "TOKEN": self.tokens["agent"],
            "SERVICE_TOKEN": self.tokens["service"],
        }
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", command, env=env, stdout=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(60):
            out, _ = await process.communicate()
        assert process.returncode == 0, out
        return json.loads(out)


@pytest.fixture(scope="module")
async def demo(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Demo]:
    async with served_over_own_stores(
        settings, tmp_path_factory, name="readme", customers=CUSTOMERS
    ) as (own, url):
        tokens = demo_tokens(own)
        headers = {"authorization": f"Bearer {tokens['agent']}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            yield Demo(url, tokens, http)


ADA = {"id": "7", "name": "Ada Larsen"}


async def _agent_view(demo: Demo, example: Example) -> None:
    answer = await demo.shell(example)
    assert "errors" not in answer, answer
    customer = answer["data"]["customer"]
    assert {k: customer[k] for k in ADA} == ADA
    assert customer["orders"]["totalCount"] == 5 and customer["addresses"]


async def _history(demo: Demo, example: Example) -> None:
    first = (await demo.graphql(example.text, {"id": "7"}))["customer"]["orders"]
    assert first["totalCount"] == 4 and len(first["edges"]) == 3
    assert first["pageInfo"]["hasNextPage"]
    after = first["pageInfo"]["endCursor"]
    second = (await demo.graphql(example.text, {"id": "7", "after": after}))["customer"]["orders"]
    assert len(second["edges"]) == 1 and not second["pageInfo"]["hasNextPage"]


async def _who(demo: Demo, example: Example) -> None:
    data = await demo.graphql(example.text)
    assert data["customerLookup"]["customer"] == ADA
    assert ADA["id"] in [e["node"]["id"] for e in data["searchCustomers"]["edges"]]


async def _contact_change(demo: Demo, example: Example) -> None:
    changed = (await demo.graphql(example.text))["updateCustomerContact"]
    assert changed["__typename"] == "UpdateCustomerContactSuccess", changed
    assert changed["customer"]["email"] == "ada@example.com"


async def _live_changes(demo: Demo, example: Example) -> None:
    socket_url = demo.url.replace("http://", "ws://") + "/graphql"
    async with connect(socket_url, subprotocols=[PROTOCOL]) as ws:
        init = {"authorization": f"Bearer {demo.tokens['agent']}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": example.text, "variables": {"id": "7"}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        try:
            # The first change may come before the subscription has started: change again,
            # each time with a new name, until one arrives.
            arrived = False
            for attempt in range(5):
                name = f"Ada{attempt}x"
                await _change_name(demo, name)
                arrived = await _arrives(ws, f"{name} Larsen")
                if arrived:
                    break
            assert arrived, "no change delivered"
        finally:  # the other examples name her Ada
            await _change_name(demo, "Ada")


async def _arrives(ws: ClientConnection, name: str) -> bool:
    """Whether a change naming `name` arrives within a few seconds (earlier examples' changes
    may arrive first)."""
    try:
        async with asyncio.timeout(4):
            while True:
                message = json.loads(await ws.recv())
                assert message["type"] == "next", message
                change = message["payload"]["data"]["customerChanged"]
                assert change["eventType"] == "customer.contact_changed"
                if change["customer"]["name"] == name:
                    return True
    except TimeoutError:
        return False


async def _change_name(demo: Demo, first_name: str) -> None:
    changed = await demo.graphql(CONTACT, {"input": {"customerId": "7", "firstName": first_name}})
    assert "Success" in changed["updateCustomerContact"]["__typename"]


async def _ticket_event(demo: Demo, example: Example) -> None:
    answer = await demo.shell(example)
    assert answer["accepted"] == 1 and answer["rejected"] == 0, answer
    tickets = await demo.graphql('{ customer(id: "7") { tickets { id status } } }')
    assert {"id": "T-0000010", "status": "PENDING"} in tickets["customer"]["tickets"]


async def _batch(demo: Demo, example: Example) -> None:
    batch = await demo.graphql(example.text, {"ids": ["7", "8", "99999"]}, "Batch")
    assert [c and c["name"] for c in batch["customers"]] == ["Ada Larsen", "Emma Jensen", None]
    emails = {"emails": ["EMMA.JENSEN.8@example.com"]}
    by_email = await demo.graphql(example.text, emails, "ByEmail")
    assert [c["id"] for c in by_email["customersByEmails"]] == ["8"]


CHECKS: dict[str, Callable[[Demo, Example], Awaitable[None]]] = {
    'curl -s -G http://127.0.0.1:8000/graphql -H "authorization: Bearer $TOKEN" \\': _agent_view,
    "query History($id: ID!, $after: String) {": _history,
    "query Who {": _who,
    'mutation { updateCustomerContact(input: {customerId: "7", email: "ada@example.com"}) {': (
        _contact_change
    ),
    "subscription Changes($id: ID!) {": _live_changes,
    'curl -s http://127.0.0.1:8000/events -H "authorization: Bearer $SERVICE_TOKEN" \\': (
        _ticket_event
    ),
    "query Batch($ids: [ID!]!) { customers(ids: $ids) { id name profile { segments } "
    "loyalty { tier } } }": _batch,
}


def test_every_request_in_the_readme_has_a_check() -> None:
    assert [e.key for e in readme_examples()] == list(CHECKS)


@pytest.mark.parametrize("example", readme_examples(), ids=lambda e: f"line-{e.line}")
async def test_the_readme_example_runs_as_written(demo: Demo, example: Example) -> None:
    await CHECKS[example.key](demo, example)


def _words(text: str) -> str:
    return " ".join(re.sub(r"([{}()])", r" \1 ", text).split())


def test_graphiqls_tabs_are_readme_documents() -> None:
    readme = _words(README.read_text(encoding="utf-8"))
    for tab in ide.TABS:
        query = str(tab["query"])
        assert _words(query) in readme, query.splitlines()[0]
