"""Bad input is the client's error: generated variables, `_entities` representations, cursors,
request bodies and CloudEvents, sent over real HTTP, never get a 5xx or `INTERNAL_SERVER_ERROR`.

The documents are derived from the schema: every root query and mutation field, its arguments
as variables, and a selection a few levels deep whose nested arguments (`first`, `after`,
`status`, ...) are variables too. Values are mostly well-typed and plausible (seeded ids, emails,
phones, cursors c360 could have made around a junk position) and sometimes junk of any JSON
type. The fuzz has stores of its own (SQL database, MongoDB database): mutations and events
change them freely, and the session's seeded customers stay as other tests expect them.

Bounded for CI: a fixed number of examples per test, derandomized (the same inputs on every
run, so a failure reproduces; Hypothesis prints the failing example), no example database. For
a longer hunt with fresh inputs: `C360_TEST_FUZZ_EXAMPLES=2000 pytest tests/http/test_fuzz.py`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLUnionType,
    get_named_type,
    is_leaf_type,
)
from hypothesis import HealthCheck, event, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.settings import Settings
from domain.principal import Role
from resolvers.errors import INTERNAL
from resolvers.schema import create_schema
from sources.events.registry import SchemaRegistry
from tests.auth import AGENT, PUBLISHER, bearer
from tests.conftest import served_over_own_stores

_LONGER = int(os.environ.get("C360_TEST_FUZZ_EXAMPLES", "0"))
CUSTOMERS = 5


def fuzz(examples: int) -> Any:
    """Hypothesis settings of one fuzz test: `examples` in CI, derandomized."""
    return hypothesis_settings(
        max_examples=_LONGER or examples,
        derandomize=not _LONGER,
        database=None,
        # One example is one HTTP request or a few: its time says nothing about the code, and
        # a per-example deadline would fail on a busy machine. The bound is the example count.
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
async def server(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """c360 over stores of the fuzz's own, seeded, served on a local port, rate limits off."""
    async with served_over_own_stores(
        settings, tmp_path_factory, name="fuzz", customers=CUSTOMERS, rate_limit_enabled=False
    ) as (_, url):
        yield url


@pytest.fixture(scope="module")
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=60) as client:
        yield client


def assert_handled(response: httpx.Response) -> None:
    """No 5xx, and no error in a GraphQL answer (one or a batch) is an unexpected one."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:2000]}"
    if "json" not in response.headers.get("content-type", ""):
        return
    body = response.json()
    for answer in body if isinstance(body, list) else [body]:
        errors = answer.get("errors") if isinstance(answer, dict) else None
        for error in errors or []:
            assert (error.get("extensions") or {}).get("code") != INTERNAL, error


async def post(http: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str]) -> None:
    """POST a JSON body (big integers and lone surrogates as Python's json writes them)."""
    content = json.dumps(body).encode()
    note(f"POST {path} {headers.get('content-type', '')}: {content[:4000]!r}")
    response = await http.post(
        path, content=content, headers={"content-type": "application/json", **headers}
    )
    note(f"-> {response.status_code}: {response.text[:2000]}")
    # What the inputs reached, for `--hypothesis-show-statistics`.
    event(f"{path} {response.status_code} {_first_code(response)}")
    assert_handled(response)


def _first_code(response: httpx.Response) -> str:
    body = response.json() if "json" in response.headers.get("content-type", "") else None
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return "data" if isinstance(body, dict) and body.get("data") else "-"
    return str((errors[0].get("extensions") or {}).get("code") or errors[0]["message"][:40])


# --- values -------------------------------------------------------------------------------

# Text of every kind, controls included, and often a NUL (which PostgreSQL text refuses).
TEXT = st.text(st.characters(codec="utf-8"), max_size=30).flatmap(
    lambda t: st.sampled_from([t] * 18 + [f"{t}\x00", f"\x00{t}"])
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.from_regex(r"\A[1-9][0-9]{18,400}\Z").map(int),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
DIGITS = st.from_regex(r"\A-?[0-9]{1,400}\Z")
IDS = st.one_of(
    st.integers(1, CUSTOMERS + 2).map(str),
    st.integers(1, CUSTOMERS + 2),
    DIGITS,
    st.sampled_from(["0", "-1", "²", "١٢", " 1", "1_0", "+1", "1e3", "T-0000001", ""]),
    TEXT,
)
EMAILS = st.one_of(
    st.integers(1, CUSTOMERS).map(lambda n: f"customer{n}@example.com"),
    st.emails(),
    TEXT.map(lambda t: f"{t}@example.com"),
    TEXT,
)
PHONES = st.one_of(st.from_regex(r"\A\+?[0-9 ().-]{0,24}\Z"), DIGITS, TEXT)
TIMES = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda t: t.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00", "2026-13-40T25:61"]),
    TEXT,
)


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Cursors as c360 makes them (base64 of a JSON array) around positions of every kind, the
# search cursor's shape among them, and text that is no cursor at all.
NOW_ISH = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
).map(dt.datetime.isoformat)
CURSORS = st.one_of(
    # Positions c360 could have made: an aware time and an id that may name a row.
    st.tuples(
        st.datetimes(timezones=st.just(dt.UTC)).map(dt.datetime.isoformat),
        st.integers(1, 2**63 - 1).map(str) | st.just("65f000000000000000000000"),
    ).map(lambda p: _cursor(json.dumps(list(p)).encode())),
    st.tuples(TIMES, st.one_of(DIGITS, IDS, JUNK)).map(
        lambda p: _cursor(json.dumps(list(p)).encode())
    ),
    st.tuples(st.just("s"), TEXT, TEXT, st.one_of(st.integers(), JUNK)).map(
        lambda p: _cursor(json.dumps(list(p)).encode())
    ),
    JUNK.map(lambda j: _cursor(json.dumps(j).encode())),
    st.binary(max_size=40).map(_cursor),
    TEXT,
)
FIRST = st.one_of(st.integers(-3, 120), st.integers(-(2**31), 2**31 - 1), st.integers())
# What an argument or input field is named says more about plausible values than its type.
BY_NAME = {
    "email": EMAILS,
    "emails": st.lists(EMAILS, max_size=4),
    "phone": PHONES,
    "after": CURSORS,
    "first": FIRST,
}


def mostly(
    good: st.SearchStrategy[Any], other: st.SearchStrategy[Any] | None = None, one_in: int = 50
) -> st.SearchStrategy[Any]:
    """Usually `good`, one time in `one_in` `other` (by default junk of any JSON type: one junk
    variable refuses a whole document, so junk is rare enough that most documents run)."""
    rare = JUNK if other is None else other
    # Hypothesis favours the simplest choice, the first: make that the good one.
    return st.sampled_from([good] * (one_in - 1) + [rare]).flatmap(lambda chosen: chosen)


def value(name: str, type_: GraphQLInputType) -> st.SearchStrategy[Any]:
    """Values for a variable or input field of a type (nullable types also get null)."""
    if isinstance(type_, GraphQLNonNull):
        return mostly(_value(name, type_.of_type))
    return mostly(st.none() | _value(name, type_))


def _value(name: str, type_: GraphQLInputType) -> st.SearchStrategy[Any]:
    if name in BY_NAME:
        return BY_NAME[name]
    if isinstance(type_, GraphQLList):
        return st.lists(value(name, type_.of_type), max_size=4)
    if isinstance(type_, GraphQLEnumType):
        return st.sampled_from(list(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        fields = {n: value(n, f.type) for n, f in type_.fields.items()}
        required = {
            n: s for n, s in fields.items() if isinstance(type_.fields[n].type, GraphQLNonNull)
        }
        optional = {n: s for n, s in fields.items() if n not in required}
        return st.fixed_dictionaries(required, optional=optional)
    scalars: dict[str, st.SearchStrategy[Any]] = {
        "ID": IDS,
        "String": TEXT,
        "Int": st.integers(),
        "Boolean": st.booleans(),
        "DateTime": TIMES,
        "Date": st.dates().map(str) | TEXT,
        "_Any": REPRESENTATIONS,
    }
    return scalars.get(type_.name, JUNK)  # type: ignore[union-attr]


REPRESENTATIONS = st.one_of(
    st.fixed_dictionaries({"__typename": st.just("Customer"), "id": IDS}),
    st.fixed_dictionaries({"__typename": st.just("Customer"), "email": EMAILS}),
    st.fixed_dictionaries({"__typename": st.just("Order"), "id": IDS}),
    st.fixed_dictionaries({"__typename": st.just("Product"), "sku": TEXT}),
    st.fixed_dictionaries(
        {"__typename": st.sampled_from(["Customer", "Order", "Product"])},
        optional={"id": mostly(IDS), "email": mostly(EMAILS), "sku": mostly(TEXT)},
    ),
    st.fixed_dictionaries(
        {"__typename": st.sampled_from(["AuditEntry", "Money", "Query", "String", "_Any"]) | TEXT},
        optional={"id": IDS, "customerId": IDS},
    ),
    JUNK,
)

# --- documents derived from the schema ----------------------------------------------------

SCHEMA = create_schema()._schema
# Object levels selected below a root field: enough to reach connections' cursors and pages.
DEPTH = 3
# Callers of every kind: rules, masks and scopes take different paths.
CALLERS = [
    AGENT,
    bearer(Role.ADMIN),
    bearer(Role.ANALYST),
    bearer(Role.CUSTOMER, subject="3"),
    bearer(Role.SERVICE, subject="fuzz", scopes=["customers:read", "orders:read"]),
    {},
]


def _type_name(type_: GraphQLInputType) -> str:
    if isinstance(type_, GraphQLNonNull):
        return f"{_type_name(type_.of_type)}!"
    if isinstance(type_, GraphQLList):
        return f"[{_type_name(type_.of_type)}]"
    return type_.name


class _Variables:
    """The variables of one document: their types, and the argument each stands for."""

    def __init__(self) -> None:
        self.types: dict[str, GraphQLInputType] = {}
        self.arguments: dict[str, str] = {}

    def add(self, argument: str, type_: GraphQLInputType) -> str:
        name = f"v{len(self.types)}"
        self.types[name] = type_
        self.arguments[name] = argument
        return name


def _field(
    name: str, field: GraphQLField, depth: int, variables: _Variables, alias: str = ""
) -> str:
    """One field with its arguments as variables and a selection of what it returns."""
    selection = _selection(field.type, depth, variables)
    if selection is None:
        return ""
    arguments = [f"{a}: ${variables.add(a, d.type)}" for a, d in field.args.items()]
    head = f"{alias}: {name}" if alias else name
    return head + (f"({', '.join(arguments)})" if arguments else "") + selection


def _selection(
    type_: GraphQLOutputType,
    depth: int,
    variables: _Variables,
    shared: frozenset[str] = frozenset(),
) -> str | None:
    """A selection of every field a few levels deep; `shared` names fields to alias apart."""
    named = get_named_type(type_)
    if is_leaf_type(named):
        return ""
    if depth >= DEPTH:
        return None
    if isinstance(named, GraphQLUnionType):
        # Members sharing a field name may give it different types: aliased, they do not clash.
        names = [n for member in named.types for n in member.fields]
        clashing = frozenset(n for n in names if names.count(n) > 1 and not n.startswith("__"))
        members = [
            f"... on {m.name} {_selection(m, depth, variables, clashing)}" for m in named.types
        ]
        return "{ __typename " + " ".join(members) + " }"
    assert isinstance(named, GraphQLObjectType)
    fields = [
        _field(n, f, depth + 1, variables, f"{named.name}_{n}" if n in shared else "")
        for n, f in named.fields.items()
        if not n.startswith("__")
    ]
    return "{ __typename " + " ".join(f for f in fields if f) + " }"


def operation(kind: str, root: GraphQLObjectType, name: str) -> tuple[str, dict[str, Any]]:
    """A document for one root field and the strategies of its variables."""
    variables = _Variables()
    body = _field(name, root.fields[name], 0, variables)
    declared = ", ".join(f"${v}: {_type_name(t)}" for v, t in variables.types.items())
    document = f"{kind} Fuzz{f'({declared})' if declared else ''} {{ {body} }}"
    strategies = {v: value(variables.arguments[v], t) for v, t in variables.types.items()}
    return document, strategies


assert SCHEMA.query_type is not None and SCHEMA.mutation_type is not None
OPERATIONS = [operation("query", SCHEMA.query_type, n) for n in SCHEMA.query_type.fields] + [
    operation("mutation", SCHEMA.mutation_type, n) for n in SCHEMA.mutation_type.fields
]


@fuzz(examples=600)
@given(data=st.data())
async def test_operations_with_generated_variables(
    http: httpx.AsyncClient, data: st.DataObject
) -> None:
    document, strategies = data.draw(st.sampled_from(OPERATIONS), label="operation")
    variables = data.draw(st.fixed_dictionaries(strategies), label="variables")
    if variables and data.draw(st.integers(0, 3), label="junk") == 0:
        variables[data.draw(st.sampled_from(sorted(variables)))] = data.draw(JUNK)
    caller = data.draw(st.sampled_from(CALLERS), label="caller")
    await post(http, "/graphql", {"query": document, "variables": variables}, caller)


ENTITIES = """query Entities($representations: [_Any!]!) {
  _entities(representations: $representations) {
    __typename
    ... on Customer { id email orders(first: 2) { edges { cursor } } }
    ... on Order { id number customer { id } }
    ... on Product { sku name }
  }
}"""


@fuzz(examples=150)
@given(representations=st.lists(REPRESENTATIONS, max_size=5))
async def test_entities_with_generated_representations(
    http: httpx.AsyncClient, representations: list[Any]
) -> None:
    await post(
        http,
        "/graphql",
        {"query": ENTITIES, "variables": {"representations": representations}},
        AGENT,
    )


PAGES = """query Pages($id: ID!, $first: Int, $after: String) {
  customer(id: $id) {
    orders(first: $first, after: $after) { edges { cursor node { id } } pageInfo { endCursor } }
    timeline(first: $first, after: $after) { edges { cursor } }
  }
  auditLog(customerId: $id, first: $first, after: $after) { edges { cursor } }
  searchCustomers(query: "customer", first: $first, after: $after) { edges { cursor } }
}"""


@fuzz(examples=150)
@given(
    customer=st.integers(1, CUSTOMERS).map(str),
    first=st.none() | FIRST,
    after=CURSORS,
)
async def test_pages_after_generated_cursors(
    http: httpx.AsyncClient, customer: str, first: int | None, after: str
) -> None:
    variables = {"id": customer, "first": first, "after": after}
    await post(http, "/graphql", {"query": PAGES, "variables": variables}, bearer(Role.ADMIN))


# Request bodies around a document: wrong types, persisted-query extensions, batches.
BODIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "query": st.sampled_from([d for d, _ in OPERATIONS[:3]]) | mostly(TEXT),
            "variables": JUNK,
            "operationName": mostly(TEXT),
            "extensions": st.fixed_dictionaries(
                {},
                optional={
                    "persistedQuery": st.dictionaries(
                        st.sampled_from(["version", "sha256Hash"]) | TEXT, JUNK, max_size=3
                    )
                },
            )
            | JUNK,
        },
    ),
    st.lists(st.fixed_dictionaries({"query": st.just("{ __typename }") | JUNK}), max_size=12),
    JUNK,
)


@fuzz(examples=150)
@given(body=BODIES, caller=st.sampled_from(CALLERS))
async def test_graphql_request_bodies(
    http: httpx.AsyncClient, body: Any, caller: dict[str, str]
) -> None:
    await post(http, "/graphql", body, caller)


# --- CloudEvents ----------------------------------------------------------------------------

REGISTRY = SchemaRegistry()


def _property(name: str, prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema of one data property accepts, mostly (junk now and then)."""
    if "pattern" in prop:
        return mostly(st.from_regex(prop["pattern"]), IDS, one_in=5)
    if "enum" in prop:
        return mostly(st.sampled_from(prop["enum"]))
    if prop.get("format") == "date-time":
        return mostly(NOW_ISH, TIMES, one_in=5)
    if name in BY_NAME:
        return mostly(BY_NAME[name])
    kinds: dict[str, st.SearchStrategy[Any]] = {
        "string": st.text(
            min_size=prop.get("minLength", 0), max_size=min(prop.get("maxLength", 40), 40)
        ),
        "integer": st.integers(prop.get("minimum"), prop.get("maximum")),
        "boolean": st.booleans(),
        "object": st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8)),
    }
    kind = prop.get("type")
    return mostly(kinds[kind]) if isinstance(kind, str) and kind in kinds else JUNK


def _data(type_: str) -> st.SearchStrategy[Any]:
    """Data for an event type: its schema's properties, now and then a field it does not know."""
    schema = REGISTRY.schema(type_)
    fields = {n: _property(n, p) for n, p in schema.get("properties", {}).items()}
    required = {n: s for n, s in fields.items() if n in schema.get("required", ())}
    optional = {n: s for n, s in fields.items() if n not in required}
    extra = mostly(st.just({}), st.dictionaries(TEXT, JUNK, min_size=1, max_size=1), one_in=5)
    return mostly(
        st.fixed_dictionaries(required, optional=optional).flatmap(
            lambda d: extra.map(lambda e: e | d)
        )
    )


def _envelope(type_: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "specversion": mostly(st.just("1.0")),
            "id": mostly(st.uuids().map(lambda u: f"fuzz-{u}")),
            "source": mostly(st.just("urn:fuzz")),
            "type": st.just(type_),
            "subject": mostly(st.integers(1, CUSTOMERS).map(str), IDS, one_in=5),
            "time": mostly(NOW_ISH, TIMES, one_in=5),
            "data": _data(type_) if type_ in REGISTRY.types else JUNK,
        },
        optional={
            "datacontenttype": mostly(st.just("application/json")),
            "dataschema": mostly(st.just(REGISTRY.dataschema(type_)))
            if type_ in REGISTRY.types
            else JUNK,
            "extension": mostly(st.just("x"), JUNK, one_in=5),
        },
    )


def _missing(envelope: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The envelope with some attributes left out."""
    return st.sets(st.sampled_from(sorted(envelope)), min_size=1, max_size=2).map(
        lambda drop: {k: v for k, v in envelope.items() if k not in drop}
    )


EVENTS = (
    st.sampled_from(REGISTRY.types)
    .flatmap(_envelope)
    .flatmap(lambda e: st.sampled_from([st.just(e)] * 4 + [_missing(e)]).flatmap(lambda s: s))
)


@fuzz(examples=300)
@given(
    body=st.one_of(
        EVENTS.map(lambda e: ("application/cloudevents+json", e)),
        st.lists(EVENTS | JUNK, max_size=4).map(
            lambda b: ("application/cloudevents-batch+json", b)
        ),
        JUNK.map(lambda j: ("application/cloudevents+json", j)),
    )
)
async def test_structured_and_batched_events(
    http: httpx.AsyncClient, body: tuple[str, Any]
) -> None:
    media_type, events = body
    await post(http, "/events", events, PUBLISHER | {"content-type": media_type})


# Header values: printable ASCII, or percent-encoded as the binding says (surrounding spaces
# are not sent: HTTP strips them, and the client refuses them).
HEADER_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(str.strip),
    TEXT.map(lambda t: "".join(f"%{b:02X}" for b in t.encode())),
    st.just("%E2%82"),
)


@fuzz(examples=100)
@given(
    event=EVENTS,
    overrides=st.dictionaries(
        st.sampled_from(["ce-specversion", "ce-id", "ce-type", "ce-subject", "ce-time", "ce-x"]),
        HEADER_VALUES,
        max_size=3,
    ),
)
async def test_binary_events(
    http: httpx.AsyncClient, event: dict[str, Any], overrides: dict[str, str]
) -> None:
    attributes = {
        f"ce-{k}": v if isinstance(v, str) else json.dumps(v)
        for k, v in event.items()
        if k != "data"
    }
    headers = {k: quote(v, safe=":/+@") for k, v in attributes.items()}
    await post(http, "/events", event.get("data"), PUBLISHER | headers | overrides)
