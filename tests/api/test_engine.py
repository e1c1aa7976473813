"""The query engine against graphql-core: the bench's documents for every role, and the
completion rules (null propagation, dropped errors, lists) on a schema made to break them."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import random
import uuid
import warnings
from typing import Annotated, Any

import pytest
import strawberry
from graphql import parse

from api import execution
from api.connections import Connections
from api.context import create_context
from api.execution import Executor
from api.settings import Engine
from bench.documents import (
    AGENT_QUERY,
    BATCH_QUERY,
    ENTITIES_QUERY,
    ORDERS_PAGE_QUERY,
    SEARCH_QUERY,
    TYPENAME_QUERY,
    many_customers_query,
)
from domain.principal import Principal, Role, Scope
from resolvers.common import LOADED
from resolvers.context import Context
from resolvers.schema import create_schema
from sources.thirdparty.simulator import VendorStore
from tests.auth import bearer
from tests.builders import build_customer
from tests.conftest import running_app


def _principal(
    role: Role, scopes: tuple[Scope, ...] = (), customer_id: int | None = None
) -> Principal:
    return Principal(
        kind="jwt",
        name=f"test-{role.value}",
        roles=frozenset({role}),
        scopes=frozenset(s.value for s in scopes),
        customer_id=customer_id,
    )


def _roles(own: int, other: int) -> dict[str, Principal]:
    return {
        "agent": _principal(Role.AGENT),
        "analyst": _principal(Role.ANALYST),
        "admin": _principal(Role.ADMIN),
        "customer": _principal(Role.CUSTOMER, customer_id=own),
        "another customer": _principal(Role.CUSTOMER, customer_id=other),
        "service, every scope": _principal(Role.SERVICE, tuple(Scope)),
        "service, no scope": _principal(Role.SERVICE),
        "service, customers only": _principal(Role.SERVICE, (Scope.CUSTOMERS,)),
    }


async def test_every_bench_document_answers_the_same_for_every_role(
    connections: Connections, vendor_store: VendorStore
) -> None:
    own = await build_customer(connections, vendor_store, orders=3)
    other = await build_customer(connections, vendor_store, orders=1)
    documents: list[tuple[str, dict[str, Any], bool]] = [
        (TYPENAME_QUERY, {}, True),
        (AGENT_QUERY, {"id": str(own)}, True),
        (ORDERS_PAGE_QUERY, {"id": str(own)}, True),
        (SEARCH_QUERY, {"query": "a"}, True),
        (BATCH_QUERY, {"ids": [str(own), str(other), "0"]}, True),
        (many_customers_query(2), {"id0": str(own), "id1": str(other)}, True),
        # Federation's entry point: customers by id, one that does not exist, an order (no
        # fields asked of it), and representations refused at their index.
        (
            ENTITIES_QUERY,
            {
                "representations": [
                    {"__typename": "Customer", "id": str(own)},
                    {"__typename": "Customer", "id": str(other)},
                    {"__typename": "Customer", "id": "0"},
                    {"__typename": "Order", "id": "1"},
                    {"__typename": "Nope", "id": "1"},
                    {"__typename": "Customer", "sku": "x"},
                ]
            },
            True,
        ),
    ]
    executor = Executor(create_schema(), Engine.DIFFERENTIAL)
    answered = 0
    for query, variables, planned in documents:
        document = parse(query)
        assert (executor.plan(document, None) is not None) is planned, query
        for role, principal in _roles(own, other).items():
            context = create_context(connections, principal=principal, request_id="engine")
            # Raises EngineMismatchError where the engine and graphql-core differ.
            result = await executor.execute(document, context, variables=variables)
            assert result.data is not None or result.errors, (role, query)
            answered += 1
    assert answered == len(documents) * 8


# A schema made to fail: non-null fields that raise or return null, synchronously and after
# an await, inside objects inside lists.


async def _later(value: Any) -> Any:
    await asyncio.sleep(0)
    if isinstance(value, Exception):
        raise value
    return value


@strawberry.type
class Leaf:
    n: int

    @strawberry.field
    def sync_fails(self) -> int:
        raise ValueError(f"sync {self.n}")

    @strawberry.field
    async def async_fails(self) -> int:
        return await _later(ValueError(f"async {self.n}"))  # type: ignore[no-any-return]

    @strawberry.field
    async def async_null(self) -> int:
        return await _later(None)  # type: ignore[no-any-return]

    @strawberry.field
    async def maybe(self) -> int | None:
        return await _later(ValueError(f"maybe {self.n}"))  # type: ignore[no-any-return]

    @strawberry.field
    async def late_maybe(self) -> int | None:
        await asyncio.sleep(0)
        return await _later(ValueError(f"late {self.n}"))  # type: ignore[no-any-return]

    @strawberry.field
    async def twice(self) -> int:
        await asyncio.sleep(0)
        return await _later(self.n * 2)  # type: ignore[no-any-return]


@strawberry.type
class Box:
    @strawberry.field
    async def leaves(self, count: int) -> list[Leaf | None]:
        return await _later([Leaf(n=i) for i in range(count)])  # type: ignore[no-any-return]

    @strawberry.field
    def strict_leaves(self, count: int) -> list[Leaf]:
        return [Leaf(n=i) for i in range(count)]

    @strawberry.field
    async def leaf(self) -> Leaf:
        return await _later(Leaf(n=7))  # type: ignore[no-any-return]

    @strawberry.field
    def names(self) -> list[str | None]:
        return ["a", None, "c"]

    @strawberry.field
    def not_a_list(self) -> list[int] | None:
        return 3  # type: ignore[return-value]


Shape = Annotated[Leaf | Box, strawberry.union("Shape")]


def _shapes(last: Any) -> list[Any]:
    # What a resolver may give (Strawberry's own `_entities` does): values, awaitables and
    # errors, side by side.
    return [
        Leaf(n=1),
        _later(Leaf(n=2)),
        Box(),
        _later(ValueError("late")),
        ValueError("now"),
        last,
    ]


@strawberry.type
class Shapes:
    @strawberry.field
    def mixed(self) -> list[Shape | None]:
        return _shapes("not a shape")

    @strawberry.field
    def strict(self) -> list[Shape] | None:
        return _shapes(Leaf(n=3))

    @strawberry.field
    def failing_first(self) -> list[Shape] | None:
        return [ValueError("first"), _later(Leaf(n=5))]

    @strawberry.field
    async def one(self) -> Shape:
        return await _later(Leaf(n=4))  # type: ignore[no-any-return]


@strawberry.type
class ToyQuery:
    @strawberry.field
    def box(self) -> Box | None:
        return Box()

    @strawberry.field
    def strict_box(self) -> Box:
        return Box()

    @strawberry.field
    def shapes(self) -> Shapes:
        return Shapes()

    @strawberry.field
    async def slow(self, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return 1


@strawberry.type
class ToyMutation:
    @strawberry.mutation
    def touch(self) -> int:
        return 1


TOY_DOCUMENTS = [
    "{ box { leaves(count: 3) { n twice maybe } } }",
    "{ box { leaves(count: 2) { n asyncFails } } }",
    "{ box { leaves(count: 2) { n syncFails maybe } } }",
    "{ box { strictLeaves(count: 2) { n asyncNull } names } }",
    "{ box { leaf { n asyncFails } names } other: box { names } }",
    "{ strictBox { leaf { asyncFails } } }",
    "{ strictBox { strictLeaves(count: 2) { syncFails } } }",
    "{ box { notAList names } }",
    "query($c: Int!) { box { leaves(count: $c) { n twice } } }",
    "query { box { ...F } } fragment F on Box { leaf { n } leaves(count: 1) { n } }",
    "{ shapes { mixed { __typename ... on Leaf { n twice } ... on Box { names } } } }",
    "{ shapes { strict { ... on Leaf { n asyncFails } } one { ... on Leaf { n } } } }",
    "{ shapes { strict { __typename } } }",
    "{ box { leaves(count: 3) { n asyncNull maybe } } }",
    "{ box { leaves(count: 3) { maybe asyncNull twice } } }",
    "{ box { leaf { maybe asyncNull } names } }",
    "{ box { leaves(count: 2) { asyncNull lateMaybe } } }",
]


@pytest.mark.parametrize("query", TOY_DOCUMENTS)
async def test_completion_follows_graphql_core(query: str) -> None:
    executor = Executor(strawberry.Schema(query=ToyQuery))
    document = parse(query)
    assert executor.plan(document, None) is not None

    ours = await executor.execute(document, None, variables={"c": 2})
    theirs = await executor.execute_with_graphql_core(document, None, variables={"c": 2})
    assert ours.data == theirs.data
    assert [e.formatted for e in ours.errors or ()] == [e.formatted for e in theirs.errors or ()]
    assert ours.errors or ("Fails" not in query and "Null" not in query and "notA" not in query)


def _random_document(chance: random.Random) -> str:
    """A query over the toy schema with several fields failing at once, at every depth."""

    def leaf() -> str:
        names = ["n", "twice", "maybe", "asyncNull", "asyncFails", "syncFails"]
        return "{ " + " ".join(chance.sample(names, chance.randint(1, 4))) + " }"

    def box_field(name: str) -> str:
        if name.endswith("eaves"):
            return f"{name}(count: {chance.randint(1, 3)}) {leaf()}"
        return f"{name} {leaf()}" if name == "leaf" else name

    def root(index: int, name: str) -> str:
        if name == "shapes":
            shapes = f"mixed {{ __typename ... on Leaf {leaf()} }} one {{ ... on Leaf {leaf()} }}"
            return f"s{index}: shapes {{ {shapes} }}"
        fields = chance.sample(["leaves", "strictLeaves", "leaf", "names", "notAList"], 2)
        return f"a{index}: {name} {{ {' '.join(box_field(field) for field in fields)} }}"

    roots = chance.sample(["box", "strictBox", "box", "shapes"], chance.randint(1, 3))
    return "{ " + " ".join(root(index, name) for index, name in enumerate(roots)) + " }"


async def test_documents_failing_everywhere_at_once_give_graphql_core_data() -> None:
    # Where several fields fail in the same loop iteration, which errors graphql-core keeps
    # depends on its task timing: it runs the pending work of an object already doomed in
    # the background, where it may still record errors, and the engine does not start that
    # work. The data, every null in its place, must be the same, and both answers have
    # errors or neither has.
    executor = Executor(strawberry.Schema(query=ToyQuery))
    chance = random.Random(13)
    failing = 0
    gc.freeze()  # each collection below then looks at this document's objects only
    try:
        for _ in range(300):
            query = _random_document(chance)
            document = parse(query)
            ours = await executor.execute(document, None)
            with warnings.catch_warnings():
                # graphql-core cancels tasks before they start, whose coroutines then warn that
                # they were never awaited (the engine leaves none: the test above).
                warnings.simplefilter("ignore", RuntimeWarning)
                before = asyncio.all_tasks()
                result = await executor.execute_with_graphql_core(document, None)
                theirs = (result.data, bool(result.errors))
                # It answers before what it settles in the background has run.
                background = asyncio.all_tasks() - before
                await asyncio.gather(*background, return_exceptions=True)
                del result, background
                gc.collect()
            assert (ours.data, bool(ours.errors)) == theirs, query
            failing += bool(ours.errors)
    finally:
        gc.unfreeze()
    assert failing > 200  # the documents do fail, mostly


# Coroutine items that never start: `mixed`'s, when the non-null `strictBox` then fails and
# nulls the whole data; the one after `failingFirst`'s non-null item that fails.
NEVER_STARTED = [
    "{ shapes { mixed { __typename } } strictBox { strictLeaves(count: 2) { syncFails } } }",
    "{ shapes { failingFirst { __typename } } }",
]


@pytest.mark.parametrize("query", NEVER_STARTED)
async def test_a_failed_run_closes_the_awaitable_items_it_never_started(query: str) -> None:
    # The engine closes them (graphql-core may leave them to be collected, with Python's
    # "never awaited" warning), and answers as graphql-core does.
    executor = Executor(strawberry.Schema(query=ToyQuery))
    document = parse(query)

    async def answer(run: Any) -> tuple[Any, list[Any], list[str]]:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            result = await run(document, None)
            answered = (result.data, [e.formatted for e in result.errors or ()])
            del result  # its errors' tracebacks hold the coroutines' frames
            gc.collect()
        return *answered, [str(w.message) for w in warned]

    ours = await answer(executor.execute)
    theirs = await answer(executor.execute_with_graphql_core)
    assert ours[:2] == theirs[:2] and ours[1]
    assert ours[2] == []


async def test_a_timed_out_run_leaves_no_resolver_behind() -> None:
    executor = Executor(strawberry.Schema(query=ToyQuery))
    document = parse("{ slow(seconds: 30) }")
    assert executor.plan(document, None) is not None
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await executor.execute(document, None)
    # Nothing is left scheduled: the resolver was closed, not abandoned mid-await.
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in pending if "slow" in repr(t)]


@pytest.mark.parametrize(
    "query",
    [
        "{ __schema { queryType { name } } }",
        "mutation { __typename }",
        "{ box @include(if: true) { names } }",
    ],
)
def test_what_a_plan_does_not_cover_is_left_to_graphql_core(query: str) -> None:
    schema = strawberry.Schema(query=ToyQuery, mutation=ToyMutation)
    assert Executor(schema).plan(parse(query), None) is None


@pytest.mark.parametrize("engine", [Engine.GRAPHQL_CORE, Engine.PLAN])
async def test_the_engines_let_go_of_the_request_once_they_have_answered(
    connections: Connections, vendor_store: VendorStore, engine: Engine
) -> None:
    """graphql-core's execution context sits in a reference cycle: holding the request's
    context, it kept its loaders and every record they fetched for the collector to find.
    The engine's groups of pending work hold their resolvers, which hold the run."""
    customers = [await build_customer(connections, vendor_store, orders=2) for _ in range(2)]
    executor = Executor(create_schema(), engine)
    variables = {"representations": [{"__typename": "Customer", "id": str(c)} for c in customers]}
    marker = uuid.uuid4().hex
    gc.collect()
    gc.disable()
    try:
        context = create_context(connections, principal=_principal(Role.AGENT), request_id=marker)
        result = await executor.execute(parse(ENTITIES_QUERY), context, variables=variables)
        assert result.errors is None and result.data is not None
        del context, result
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        # Only this request's context counts: whatever else ran meanwhile (the session's
        # background loops, an earlier test's vendor call finishing) may leave cycles too.
        kept = [o for o in gc.garbage if isinstance(o, Context) and o.request_id == marker]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not kept, "the request's context waited for a full collection"


async def test_a_loaded_field_is_answered_from_its_loader_without_its_resolver(
    connections: Connections, vendor_store: VendorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`OrderLine.product` is declared by what it loads: the engine asks the loader and
    converts, graphql-core calls the resolver made from the same declaration."""
    customer = await build_customer(connections, vendor_store, orders=3)
    schema = create_schema()
    definition = schema.get_type_by_name("OrderLine").get_field("product")  # type: ignore[union-attr]
    assert definition is not None and definition.base_resolver is not None
    calls = {"resolver": 0, "convert": 0}
    resolve = definition.base_resolver.wrapped_func
    spec = definition.metadata[LOADED]

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls["resolver"] += 1
        return await resolve(*args, **kwargs)

    def converted(line: Any, record: Any) -> Any:
        calls["convert"] += 1
        return spec.convert(line, record)

    monkeypatch.setattr(definition.base_resolver, "wrapped_func", counted)
    # The engine reads the declaration from the field's metadata; the resolver keeps its own.
    replaced = dataclasses.replace(spec, convert=converted)
    monkeypatch.setattr(definition, "metadata", {**definition.metadata, LOADED: replaced})
    answers = []
    for engine in (Engine.PLAN, Engine.GRAPHQL_CORE):
        context = create_context(connections, principal=_principal(Role.AGENT))
        result = await Executor(schema, engine).execute(
            parse(ORDERS_PAGE_QUERY), context, variables={"id": str(customer)}
        )
        assert result.errors is None
        answers.append((result.data, dict(calls)))
    (engine_data, after_engine), (core_data, after_core) = answers
    lines = sum(len(e["node"]["lines"]) for e in engine_data["customer"]["orders"]["edges"])
    assert lines > 0 and engine_data == core_data
    assert after_engine == {"resolver": 0, "convert": lines}
    assert after_core == {"resolver": lines, "convert": lines}


async def test_a_document_reading_outside_the_loaders_is_never_compared_even_first(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The audit log is read from its table: between two runs of one request, the flush may
    # add rows. Its plan learns so only as it runs, so the first request of such a document
    # must not be compared either (the fuzz test caught one that was, and differed).
    compared = 0
    compare = execution._compare

    def counted(*args: Any) -> None:
        nonlocal compared
        compared += 1
        compare(*args)

    monkeypatch.setattr(execution, "_compare", counted)
    query = """query($id: ID!) { customer(id: $id) { id }
      auditLog(customerId: $id) { edges { cursor } } }"""
    async with running_app(settings) as (_, http):  # a new app: no plan made yet
        for _ in range(2):
            answer = await http.post(
                "/graphql",
                json={"query": query, "variables": {"id": "1"}},
                headers=bearer(Role.ADMIN),
            )
            assert "errors" not in answer.json(), answer.json()
        # Without the audit log, the same request is compared (so the count can move).
        plain = await http.post(
            "/graphql", json={"query": '{ customer(id: "1") { id } }'}, headers=bearer(Role.ADMIN)
        )
        assert "errors" not in plain.json()
    assert compared == 2  # the plain request's two comparisons only


async def test_a_rule_of_the_principal_alone_is_checked_once_per_operation(
    connections: Connections, vendor_store: VendorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Order.shipment` is `readable(SHIPMENTS)`: the principal decides it, whichever order it
    is asked of. The engine checks it once for the operation; a refusal is still one error per
    order, as graphql-core gives it."""
    from resolvers import access

    customer = await build_customer(connections, vendor_store, orders=3)
    asked: list[Scope] = []
    allows = access._Readable.has_permission

    def counted(rule: Any, source: Any, info: Any, **kwargs: Any) -> bool:
        asked.append(rule.scope)
        return allows(rule, source, info, **kwargs)

    monkeypatch.setattr(access._Readable, "has_permission", counted)
    query = """query($id: ID!) {
      customer(id: $id) { orders { edges { node { shipment { status } } } } }
    }"""
    answers = {}
    for role, principal in (
        ("agent", _principal(Role.AGENT)),
        ("service without shipments", _principal(Role.SERVICE, (Scope.CUSTOMERS, Scope.ORDERS))),
    ):
        for engine in (Engine.PLAN, Engine.GRAPHQL_CORE):
            asked.clear()
            context = create_context(connections, principal=principal)
            result = await Executor(create_schema(), engine).execute(
                parse(query), context, variables={"id": str(customer)}
            )
            answers[role, engine] = (result, asked.count(Scope.SHIPMENTS))
    agent, agent_core = answers["agent", Engine.PLAN], answers["agent", Engine.GRAPHQL_CORE]
    assert agent[0].errors is None and agent[0].data == agent_core[0].data
    assert (agent[1], agent_core[1]) == (1, 3)
    refused = answers["service without shipments", Engine.PLAN]
    refused_core = answers["service without shipments", Engine.GRAPHQL_CORE]
    assert refused[0].errors and refused_core[0].errors
    codes = [e.extensions["code"] for e in refused[0].errors if e.extensions]
    assert codes == ["FORBIDDEN"] * 3 and len(refused_core[0].errors) == 3
    # A refusal is not remembered: the optimistic attempt stops at the first, and the run in
    # graphql-core's order checks each order again.
    assert (refused[1], refused_core[1]) == (1 + 3, 3)


CALLED: list[str] = []


@strawberry.type
class Derived:
    """Sync methods of their object alone, whose values no fast path takes."""

    @strawberry.field
    def wide(self) -> int:  # beyond Int's 32 bits: an error where it is completed
        CALLED.append("wide")
        return 2**40

    @strawberry.field
    def absent(self) -> str | None:
        CALLED.append("absent")
        return None

    @strawberry.field
    def required(self) -> str:  # null where non-null: its parent is nulled
        CALLED.append("required")
        return None  # type: ignore[return-value]


@strawberry.type
class DerivedQuery:
    @strawberry.field
    def derived(self) -> Derived | None:
        return Derived()


@pytest.mark.parametrize("selection", ["wide absent", "absent", "absent required"])
async def test_a_derived_field_is_called_once_and_answers_as_graphql_core(selection: str) -> None:
    """The engine calls a method of its object alone inline; a value none of its fast paths
    takes is completed from the value in hand, not by calling the method again."""
    executor = Executor(strawberry.Schema(query=DerivedQuery))
    document = parse(f"{{ derived {{ {selection} }} }}")
    CALLED.clear()
    ours = await executor.execute(document, None)
    called, CALLED[:] = list(CALLED), []
    theirs = await executor.execute_with_graphql_core(document, None)
    assert called == CALLED  # once each, and those graphql-core calls
    assert len(called) == len(set(called)) and called
    assert ours.data == theirs.data
    assert [(e.message, e.path) for e in ours.errors or []] == [
        (e.message, e.path) for e in theirs.errors or []
    ]
