"""Query limits: depth, aliases and cost, measured on a small schema of the test's own."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
import strawberry
from graphql import (
    GraphQLError,
    GraphQLSchema,
    get_introspection_query,
    parse,
    validate,
)

from api.admission import Admission, Refusal
from api.graphql_http import select_operation
from api.limits import (
    QUERY_TOO_COMPLEX,
    ComparisonsExceededError,
    check_cost,
    check_shape,
    merge_rule,
)
from api.settings import Settings
from domain.principal import Principal, Role
from resolvers.schema import create_schema
from tests.queries import AGENT_QUERY, GRAPHIQL_INTROSPECTION, fragment_chain

PAGE_DEFAULT = 20


@strawberry.type
class Label:
    text: str


@strawberry.type
class Tag:
    name: str
    label: Label


@strawberry.type
class Item:
    id: strawberry.ID
    title: str

    @strawberry.field(metadata={"list_size": 4})
    def tags(self) -> list[Tag]:
        return []

    @strawberry.field
    def related(self) -> list[Tag]:
        return []


@strawberry.type
class ItemEdge:
    node: Item


@strawberry.type
class ItemConnection:
    total: int
    edges: list[ItemEdge]


SearchResult = Annotated[Item | Tag, strawberry.union("SearchResult")]


@strawberry.type
class Query:
    @strawberry.field
    def item(self, id: strawberry.ID) -> Item | None:
        return None

    @strawberry.field
    def items(self, first: int | None = None) -> ItemConnection:
        return ItemConnection(total=0, edges=[])

    @strawberry.field
    def top(self, first: int = 5) -> list[Item]:
        return []

    @strawberry.field(metadata={"list_size_arg": "ids", "list_size": 7})
    def items_by_ids(self, ids: list[strawberry.ID]) -> list[Item | None]:
        return []

    @strawberry.field
    def search(self) -> list[SearchResult]:
        return []


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return strawberry.Schema(query=Query)._schema


def check_limits(
    schema: GraphQLSchema,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    operation_name: str | None = None,
    max_depth: int = 100,
    max_aliases: int = 100,
    cost_budget: int = 1_000_000,
    role: str = "agent",
) -> list[GraphQLError]:
    """The shape errors of a document, then the cost error of its operation to run, as
    admission checks them (without validation, so a document it would refuse may be measured)."""
    document = parse(query)
    shape = check_shape(document, max_selections=None, max_depth=max_depth, max_aliases=max_aliases)
    if any(error.extensions and "measured" not in error.extensions for error in shape):
        return shape  # nested too deeply to be measured, so to be priced too
    cost = check_cost(
        schema,
        document,
        select_operation(document, operation_name),
        variables=variables,
        budget=cost_budget,
        role=role,
        page_default=PAGE_DEFAULT,
    ).error
    return shape if cost is None else [*shape, cost]


def limit_errors(
    schema: GraphQLSchema,
    query: str,
    variables: dict[str, Any] | None = None,
    **limits: Any,
) -> list[GraphQLError]:
    """The limit errors of a document the spec rules accept."""
    assert validate(schema, parse(query)) == []
    return check_limits(schema, query, variables, **limits)


def measure(
    schema: GraphQLSchema, query: str, variables: dict[str, Any] | None = None
) -> dict[str, int]:
    """Depth, aliases and cost of a one-operation document, read from zero-limit errors."""
    errors = limit_errors(schema, query, variables, max_depth=0, max_aliases=0, cost_budget=0)
    measured = {"depth": 0, "aliases": 0, "cost": 0}
    for error in errors:
        assert error.extensions is not None
        measured[error.extensions["limit"]] = error.extensions["measured"]
    return measured


def test_depth_counts_fields_through_fragments_and_inline_fragments(
    schema: GraphQLSchema,
) -> None:
    query = """{ items { ...Page } }
    fragment Page on ItemConnection { edges { node { ... on Item { tags { name } } } } }"""
    assert measure(schema, query)["depth"] == 5
    assert measure(schema, "{ item(id: 1) { title } }")["depth"] == 2
    assert measure(schema, "{ __typename }")["depth"] == 1


def test_depth_over_the_limit_is_refused_with_both_numbers(schema: GraphQLSchema) -> None:
    query = "{ item(id: 1) { tags { label { text } } } }"
    assert limit_errors(schema, query, max_depth=4) == []
    [error] = limit_errors(schema, query, max_depth=3)
    assert error.message == "The operation is 4 levels deep; at most 3 are allowed."
    assert error.extensions == {
        "code": QUERY_TOO_COMPLEX,
        "limit": "depth",
        "measured": 4,
        "allowed": 3,
    }
    assert error.locations is not None and error.locations[0].line == 1


def test_aliases_are_counted_once_per_document_fragments_included(
    schema: GraphQLSchema,
) -> None:
    query = """{ a: item(id: 1) { t: title } b: item(id: 2) { title } ...More ...More }
    fragment More on Query { c: item(id: 3) { id } }"""
    assert limit_errors(schema, query, max_aliases=4) == []
    [error] = limit_errors(schema, query, max_aliases=3)
    assert error.message == "The document has 4 aliases; at most 3 are allowed."
    assert error.extensions == {
        "code": QUERY_TOO_COMPLEX,
        "limit": "aliases",
        "measured": 4,
        "allowed": 3,
    }


def test_first_multiplies_the_cost_of_the_selection(schema: GraphQLSchema) -> None:
    # items = 1 + first * (edges: 1 + 1 * (node: 1 + 0))
    assert measure(schema, "{ items(first: 10) { edges { node { title } } } }")["cost"] == 21
    assert measure(schema, "{ items(first: 0) { edges { node { title } } } }")["cost"] == 1


def test_first_from_variables_default_or_page_default(schema: GraphQLSchema) -> None:
    query = "query($n: Int) { items(first: $n) { edges { node { title } } } }"
    assert measure(schema, query, {"n": 3})["cost"] == 1 + 3 * 2
    assert measure(schema, query, {"n": 3.0})["cost"] == 1 + 3 * 2
    # Unset or null: the resolver's page_default.
    assert measure(schema, query, {})["cost"] == 1 + PAGE_DEFAULT * 2
    assert measure(schema, query, {"n": None})["cost"] == 1 + PAGE_DEFAULT * 2
    assert measure(schema, "{ items { edges { node { title } } } }")["cost"] == 41
    with_default = "query($n: Int = 4) { items(first: $n) { edges { node { title } } } }"
    assert measure(schema, with_default)["cost"] == 1 + 4 * 2
    assert measure(schema, with_default, {"n": 6})["cost"] == 1 + 6 * 2


def test_first_defaults_to_the_schema_default(schema: GraphQLSchema) -> None:
    # top(first = 5) of items whose tags (4 each, by hint) have a label.
    assert measure(schema, "{ top { tags { label { text } } } }")["cost"] == 1 + 5 * (1 + 4 * 1)
    assert measure(schema, "{ top(first: 2) { tags { label { text } } } }")["cost"] == 11


def test_list_size_hint_and_unhinted_lists(schema: GraphQLSchema) -> None:
    assert measure(schema, "{ item(id: 1) { tags { label { text } } } }")["cost"] == 1 + 5
    # No hint and no `first`: a list is priced like one item.
    assert measure(schema, "{ item(id: 1) { related { label { text } } } }")["cost"] == 1 + 2


def test_list_size_arg_multiplies_by_the_length_of_the_list(schema: GraphQLSchema) -> None:
    item = "{ tags { label { text } } }"  # 5 per item
    literal = f'{{ itemsByIds(ids: ["1", "2", "3"]) {item} }}'
    assert measure(schema, literal)["cost"] == 1 + 3 * 5
    variable = f"query($ids: [ID!]!) {{ itemsByIds(ids: $ids) {item} }}"
    assert measure(schema, variable, {"ids": ["1", "2", "3", "4", "5"]})["cost"] == 1 + 5 * 5
    # One value where a list is expected is a list of one.
    assert measure(schema, f'{{ itemsByIds(ids: "1") {item} }}')["cost"] == 1 + 5
    # An unknown length falls back to the `list_size` hint.
    assert measure(schema, variable, {})["cost"] == 1 + 7 * 5


def test_fragments_are_priced_at_each_use_site(schema: GraphQLSchema) -> None:
    query = """{ a: items(first: 2) { ...Page } b: items(first: 3) { ...Page } }
    fragment Page on ItemConnection { edges { node { title } } }"""
    assert measure(schema, query)["cost"] == (1 + 2 * 2) + (1 + 3 * 2)


def test_a_fragment_spread_a_billion_times_is_priced_once(schema: GraphQLSchema) -> None:
    # F30 spreads F29 twice, which spreads F28 twice...: 2**30 copies of F0 once expanded.
    fragments = "\n".join(
        f"fragment F{n} on Item {{ ...F{n - 1} ...F{n - 1} }}" for n in range(1, 31)
    )
    base = "fragment F0 on Item { tags { label { text } } }"
    query = f"{{ item(id: 1) {{ ...F30 }} }}\n{base}\n{fragments}"
    [error] = check_limits(schema, query, max_depth=10, max_aliases=0)
    assert error.extensions is not None
    assert error.extensions["measured"] == 1 + 2**30 * 5


def test_union_members_are_all_added(schema: GraphQLSchema) -> None:
    query = "{ search { ... on Item { tags { label { text } } } ... on Tag { label { text } } } }"
    assert measure(schema, query)["cost"] == 1 + (5 + 1)


def test_typename_costs_nothing(schema: GraphQLSchema) -> None:
    assert measure(schema, "{ __typename }")["cost"] == 0
    assert measure(schema, "{ __typename item(id: 1) { __typename } }")["cost"] == 1
    assert limit_errors(schema, "{ __typename }", cost_budget=0) == []


@pytest.mark.parametrize(
    "introspection",
    [
        get_introspection_query(),
        GRAPHIQL_INTROSPECTION,  # GraphiQL's own variant
    ],
)
def test_introspection_passes_the_tightest_limits(
    schema: GraphQLSchema, introspection: str
) -> None:
    assert limit_errors(schema, introspection, max_depth=1, max_aliases=0, cost_budget=0) == []


def test_introspection_beside_data_measures_only_the_data(schema: GraphQLSchema) -> None:
    query = "{ __schema { types { name fields { name } } } item(id: 1) { tags { name } } }"
    assert measure(schema, query) == {"depth": 3, "aliases": 0, "cost": 2}


def test_cost_over_the_budget_names_the_role_and_both_numbers(schema: GraphQLSchema) -> None:
    query = "{ items(first: 10000) { edges { node { title } } } }"
    assert limit_errors(schema, query, cost_budget=20_001, role="analyst") == []
    [error] = limit_errors(schema, query, cost_budget=20_000, role="analyst")
    assert error.message == (
        "The operation costs 20,001, over the analyst budget of 20,000: "
        "ask for fewer items (`first`) or fewer fields."
    )
    assert error.extensions == {
        "code": QUERY_TOO_COMPLEX,
        "limit": "cost",
        "measured": 20_001,
        "allowed": 20_000,
    }


def test_only_the_operation_to_run_is_priced(schema: GraphQLSchema) -> None:
    query = """query Cheap { item(id: 1) { title } }
    query Dear { items(first: 50) { edges { node { title } } } }"""
    assert limit_errors(schema, query, operation_name="Cheap", cost_budget=100) == []
    [error] = limit_errors(schema, query, operation_name="Dear", cost_budget=100)
    assert error.extensions is not None and error.extensions["measured"] == 101
    assert error.locations is not None and error.locations[0].line == 2


def test_a_fragment_chain_too_long_to_measure_is_refused(schema: GraphQLSchema) -> None:
    # The spec rules refuse this before the limits see it; check_limits must not crash on it.
    chain = "\n".join(f"fragment F{n} on Query {{ ...F{n + 1} }}" for n in range(1500))
    query = f"{{ ...F0 }}\n{chain}\nfragment F1500 on Query {{ __typename }}"
    [error] = check_limits(schema, query, max_depth=10, max_aliases=10, cost_budget=10)
    assert error.message == "The document nests fragments too deeply to be measured."
    assert error.extensions == {"code": QUERY_TOO_COMPLEX, "limit": "depth", "allowed": 10}


def selections(query: str) -> int:
    """The selections of a document, read from a zero-limit refusal."""
    errors = check_shape(parse(query), max_selections=0, max_depth=100, max_aliases=100)
    [error] = [e for e in errors if e.extensions and e.extensions["limit"] == "selections"]
    assert error.extensions is not None
    measured: int = error.extensions["measured"]
    return measured


def test_selections_count_fields_and_fragments_at_each_spread() -> None:
    assert selections("{ __typename }") == 1
    # items, edges, node, title; the inline fragment is a selection too.
    assert selections("{ items { edges { node { ... on Item { title } } } } }") == 5
    # Each alias spreads Page: itself, the spread, and Page's three fields.
    query = """{ a: items(first: 2) { ...Page } b: items(first: 3) { ...Page } }
    fragment Page on ItemConnection { edges { node { title } } }"""
    assert selections(query) == 2 * (1 + 1 + 3)


def test_selections_count_every_operation_of_the_document() -> None:
    # Each operation: its spread, F0..F119's spreads and F120's __typename.
    assert selections(fragment_chain(1, 120)) == 122
    assert selections(fragment_chain(350, 120)) == 350 * 122
    [error] = check_shape(
        parse(fragment_chain(350, 120)), max_selections=1_000, max_depth=12, max_aliases=0
    )
    assert error.message == (
        "The document's 350 operations select 42,700 fields and fragments once their fragments "
        "are spread; at most 1,000 are allowed."
    )
    assert error.locations is not None and error.locations[0].column == 1


def test_too_many_selections_are_refused_with_both_numbers() -> None:
    query = "{ item(id: 1) { " + "title " * 9 + "} }"
    document = parse(query)
    assert check_shape(document, max_selections=10, max_depth=10, max_aliases=0) == []
    [error] = check_shape(document, max_selections=9, max_depth=10, max_aliases=0)
    assert error.message == (
        "The operation selects 10 fields and fragments once its fragments are spread; "
        "at most 9 are allowed."
    )
    assert error.extensions == {
        "code": QUERY_TOO_COMPLEX,
        "limit": "selections",
        "measured": 10,
        "allowed": 9,
    }


def test_a_fragment_bomb_is_measured_at_once_and_refused() -> None:
    # F30 spreads F29 twice, which spreads F28 twice...: 2**30 copies of F0 once expanded.
    fragments = "\n".join(
        f"fragment F{n} on Item {{ ...F{n - 1} ...F{n - 1} }}" for n in range(1, 31)
    )
    query = f"{{ item(id: 1) {{ ...F30 }} }}\nfragment F0 on Item {{ title }}\n{fragments}"
    spread = 1  # F0: title
    for _ in range(30):
        spread = 2 * (1 + spread)  # two spreads, each with what it brings
    assert selections(query) == 1 + 1 + spread


def comparisons_refused(schema: GraphQLSchema, query: str, budget: int) -> ComparisonsExceededError:
    with pytest.raises(ComparisonsExceededError) as exceeded:
        validate(schema, parse(query), [merge_rule(budget)])
    return exceeded.value


def test_a_field_repeated_spends_the_comparisons_budget_and_stops_there(
    schema: GraphQLSchema,
) -> None:
    # The document, on this schema: 400 times one field, 79,800 pairs to compare,
    # which graphql-core's own budget (500,000) lets run for seconds.
    repeated = "items(first: 1) { total } "
    query = "{ " + repeated * 400 + "}"
    exceeded = comparisons_refused(schema, query, 1_000)
    # Stopped at the budget: it spends at most 2 at a time.
    assert 1_000 < exceeded.spent <= 1_002
    error = exceeded.as_graphql_error()
    assert "over 1,000 comparisons" in error.message
    assert error.extensions == {
        "code": QUERY_TOO_COMPLEX,
        "limit": "comparisons",
        "measured": exceeded.spent,
        "allowed": 1_000,
    }
    # The same repeats through fragments (one fragment spread again is compared once), and
    # nested under a field.
    spreads = " ".join(f"...R{n}" for n in range(100))
    defined = " ".join(f"fragment R{n} on Query {{ {repeated} }}" for n in range(100))
    via_fragment = f"{{ {spreads} }} {defined}"
    assert comparisons_refused(schema, via_fragment, 1_000).spent <= 1_002
    nested = "{ items(first: 1) { edges { node { tags { " + "label { text } " * 300 + "} } } } }"
    assert comparisons_refused(schema, nested, 1_000).spent <= 1_002


def test_distinct_fields_spend_no_comparisons(schema: GraphQLSchema) -> None:
    agent = create_schema()._schema
    assert validate(agent, parse(AGENT_QUERY), [merge_rule(0)]) == []
    assert validate(schema, parse(get_introspection_query()), [merge_rule(0)]) == []


def test_the_budgeted_merge_rule_still_reports_conflicts(schema: GraphQLSchema) -> None:
    [error] = validate(schema, parse("{ item(id: 1) { t: title t: id } }"), [merge_rule(100)])
    assert error.message.startswith("Fields 't' conflict because 'title' and 'id'")
    # Validation's own error limit ends validation within the budget; it is not the budget.
    conflicting = "{ item(id: 1) { " + "t: title t: id " * 15 + "} }"
    errors = validate(schema, parse(conflicting), [merge_rule(1_000_000)])
    assert errors[-1].message.startswith("Too many validation errors")


def test_the_agent_query_fits_the_agent_limits() -> None:
    schema = create_schema()._schema
    defaults = Settings(_env_file=None)
    measured = measure(schema, AGENT_QUERY, {"id": "1"})
    assert 0 < measured["cost"] <= defaults.limit_cost_agent
    assert 0 < measured["depth"] <= defaults.limit_depth
    assert measured["aliases"] == 0
    assert selections(AGENT_QUERY) <= defaults.limit_selections / 10
    rules = [merge_rule(defaults.limit_comparisons)]
    assert validate(schema, parse(AGENT_QUERY, max_tokens=defaults.limit_tokens), rules) == []


def test_a_price_is_kept_with_its_document_unless_a_variable_sets_it() -> None:
    """Admission prices an operation once per document and role when no variable changes the
    price (the agent view's `$id`), and every time when one does (`first: $n`)."""
    settings = Settings(_env_file=None, limit_cost_agent=100)
    admission = Admission(create_schema()._schema, settings)
    agent = Principal(kind="api-key", name="desk", roles=frozenset({Role.AGENT}))

    def admit(query: str, variables: dict[str, Any]) -> Refusal | None:
        document = parse(query)
        operation = select_operation(document, None)
        assert admission.check(query, document, operation, agent) is None
        return admission.admit(query, document, operation, agent, variables)

    paged = (
        "query($id: ID!, $n: Int) { customer(id: $id) {"
        " orders(first: $n) { edges { node { number } } } } }"
    )
    assert check_cost(
        create_schema()._schema,
        parse(paged),
        select_operation(parse(paged), None),
        variables={"id": "1", "n": 1},
        budget=100,
        role="agent",
        page_default=PAGE_DEFAULT,
    ).reads_variables
    assert admit(paged, {"id": "1", "n": 1}) is None
    refused = admit(paged, {"id": "1", "n": 1000})
    assert refused is not None and refused.errors[0].extensions["limit"] == "cost"
    assert admit(paged, {"id": "2", "n": 2}) is None

    fixed = "query($id: ID!) { customer(id: $id) { orders(first: 99) { edges { cursor } } } }"
    first = admit(fixed, {"id": "1"})
    assert first is not None and admit(fixed, {"id": "2"}) is first  # kept, not priced again
