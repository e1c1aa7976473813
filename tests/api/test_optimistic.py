"""The engine's optimistic run: an answer runs once in the cheapest order, and again in
graphql-core's order only when an error or a stale value makes the order show, without asking a
failed source twice or auditing a read twice.

That both runs give graphql-core's bytes is the differential check's part (every test runs
under it, and tests/api/test_engine.py adds the bench's documents and a schema made to break
completion); this file holds what that check cannot see."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from graphql import ExecutionResult, parse

from api.connections import Connections
from api.context import create_context, create_loaders
from api.engine import optimistic
from api.execution import Executor
from api.settings import Engine, Settings
from bench.documents import AGENT_QUERY
from domain.principal import Principal, Role
from resolvers.context import Loaders
from resolvers.schema import create_schema
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer
from tests.conftest import Simulator, running_app
from tests.queries import agent_view

AGENT = Principal(kind="jwt", name="test-agent", roles=frozenset({Role.AGENT}))


class _Audited:
    """The connections, with the audit log's records captured instead of written."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        self.records: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connections, name)

    @property
    def audit(self) -> _Audited:
        return self

    def record(self, **entry: Any) -> None:
        self.records.append(entry)


@pytest.fixture
def second_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many operations ran again in graphql-core's order (one entry per run)."""
    runs: list[int] = []

    class Counted(optimistic.Run):
        async def execute(self, plan: Any) -> ExecutionResult:
            runs.append(1)
            return await super().execute(plan)

    monkeypatch.setattr(optimistic, "Run", Counted)
    return runs


async def _agent_view(
    connections: Connections,
    customer: int,
    engine: Engine = Engine.PLAN,
    loaders: Loaders | None = None,
) -> tuple[ExecutionResult, list[str]]:
    """The agent query on one engine, with the fields of the audit records it wrote."""
    audited = _Audited(connections)
    context = create_context(connections, principal=AGENT, request_id="optimistic", loaders=loaders)
    context = dataclasses.replace(context, connections=audited)  # type: ignore[arg-type]
    result = await Executor(create_schema(), engine).execute(
        parse(AGENT_QUERY), context, variables={"id": str(customer)}
    )
    return result, sorted(r["field_name"] for r in audited.records)


async def test_an_answer_without_errors_runs_once(
    connections: Connections, vendor_store: VendorStore, second_runs: list[int]
) -> None:
    customer = await build_customer(connections, vendor_store, orders=3)

    result, audited = await _agent_view(connections, customer)

    assert result.errors is None and result.data and result.data["customer"]
    assert second_runs == []
    # The clear-text reads were held while the answer could still run again, then written.
    _, reference = await _agent_view(connections, customer, Engine.GRAPHQL_CORE)
    assert audited == reference and "Customer.email" in audited


async def test_an_answer_with_an_error_runs_again_and_audits_each_read_once(
    connections: Connections,
    vendor_store: VendorStore,
    vendor_faults: Simulator,
    second_runs: list[int],
) -> None:
    customer = await build_customer(connections, vendor_store, orders=3)
    vendor_faults.set_faults("tracking", failure_rate=1.0)

    result, audited = await _agent_view(connections, customer)

    assert result.errors and {e.path[-1] for e in result.errors} == {"shipment"}
    assert second_runs == [1]
    _, reference = await _agent_view(connections, customer, Engine.GRAPHQL_CORE)
    assert audited == reference and "Customer.email" in audited


async def test_a_batch_that_raised_is_not_run_again_by_the_second_run(
    connections: Connections, vendor_store: VendorStore, second_runs: list[int]
) -> None:
    customer = await build_customer(connections, vendor_store, orders=1)
    loaders = create_loaders(connections)
    batches: list[list[Any]] = []

    async def broken(keys: Sequence[Any]) -> list[Any]:
        batches.append(list(keys))
        raise RuntimeError("a bug in the loyalty batch")

    loaders.vendor.loyalty_by_customer_id.batch = broken

    result, _ = await _agent_view(connections, customer, loaders=loaders)

    assert result.errors and [e.path for e in result.errors] == [["customer", "loyalty"]]
    assert second_runs == [1]
    assert batches == [[customer]]  # the second run met the same failure, held


@pytest.mark.parametrize("failing", ["tracking", "loyalty"])
async def test_a_source_that_is_down_is_asked_as_often_as_graphql_core_asks_it(
    settings: Settings,
    connections: Connections,
    vendor_store: VendorStore,
    vendor_faults: Simulator,
    failing: str,
) -> None:
    customer = await build_customer(connections, vendor_store, orders=3)
    vendor_faults.set_faults(failing, failure_rate=1.0)
    spent: dict[Engine, int] = {}
    for engine in (Engine.GRAPHQL_CORE, Engine.DIFFERENTIAL):
        async with running_app(settings.model_copy(update={"engine": engine})) as (app, http):
            trips = app.state.connections.round_trips
            before = trips.snapshot()
            body = await agent_view(http, customer)
            spent[engine] = trips.since(before)[failing]
        assert body["errors"], engine
    # graphql-core asks the failed source once; the engine, which answered twice, as often.
    assert spent[Engine.DIFFERENTIAL] == spent[Engine.GRAPHQL_CORE] >= 1
