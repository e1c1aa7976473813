"""c360 as an Apollo Federation 2 subgraph, and the two SDLs printed from one schema.

The served schema is a federation schema: `Customer @key(fields: "id") @key(fields: "email")`,
`Order @key(fields: "id")` and `Product @key(fields: "sku")`, with `_service { sdl }` and
`_entities(representations:)` on `Query` for a gateway.

Strawberry's `_entities` calls each type's `resolve_reference` for one representation after
another, without awaiting: c360's are coroutines, so it returns a list of them, which
graphql-core completes side by side (one `gather`). Every representation asks its loader in the
same tick, so 100 representations cost one round trip per source, like 100 ids in
`customers(ids:)`; `tests/federation/test_entities.py` counts them.

Two SDLs come out of it:
- `client_sdl`: what clients see and `schema.graphql` holds, with none of federation's
  additions (no `_entities`, `_service`, `_Any`, `_Entity`, `@key`, `@link`, ...);
- `subgraph_sdl`: what a gateway composes (`schema.subgraph.graphql`), Strawberry's own print of
  the federation schema, the same text `_service { sdl }` answers.
"""

from __future__ import annotations

from typing import Literal

import strawberry
from graphql import (
    GraphQLDirective,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    is_introspection_type,
    is_specified_directive,
    is_specified_scalar_type,
    print_directive,
    print_type,
)

FEDERATION_VERSION: Literal["2.11"] = "2.11"
# What federation adds to Query: the gateway's entry points.
FEDERATION_FIELDS = frozenset({"_entities", "_service"})
_STRAWBERRY_DEFINITION = "strawberry-definition"


def price_entities(schema: strawberry.Schema) -> None:
    """Price `_entities` by its number of representations, like `customers(ids:)` by its ids
    (`api.limits`), rather than as one item."""
    query = schema._schema.query_type
    field = query.fields.get("_entities") if query else None
    definition = (field.extensions or {}).get(_STRAWBERRY_DEFINITION) if field else None
    if definition is not None:
        definition.metadata = {**(definition.metadata or {}), "list_size_arg": "representations"}


def is_federation_type(name: str) -> bool:
    """Federation's own types: its underscore names (`_Any`, `_Entity`, `_Service`,
    `_FieldSet`) and the types of the specs it links (`link__Import`, `federation__Scope`)."""
    return name.startswith(("_", "link__", "federation__")) and not name.startswith("__")


def _is_federation_directive(directive: GraphQLDirective) -> bool:
    definition = (directive.extensions or {}).get(_STRAWBERRY_DEFINITION)
    origin = getattr(definition, "origin", None)
    return str(getattr(origin, "__module__", "")).startswith("strawberry.federation")


def _client_type(graphql_type: GraphQLNamedType, schema: GraphQLSchema) -> GraphQLNamedType:
    if graphql_type is not schema.query_type:
        return graphql_type
    assert isinstance(graphql_type, GraphQLObjectType)
    fields = {n: f for n, f in graphql_type.fields.items() if n not in FEDERATION_FIELDS}
    return GraphQLObjectType(graphql_type.name, fields, description=graphql_type.description)


def client_sdl(schema: strawberry.Schema) -> str:
    """The schema as clients see it, without federation's additions (schema.graphql).

    graphql-core's printer, as Strawberry's uses it for a schema without schema directives
    (c360 names its root types Query, Mutation and Subscription, so there is no `schema`
    block): definitions of the directives c360 declares, then every type by name.
    """
    graphql_schema = schema._schema
    directives = [
        print_directive(d)
        for d in graphql_schema.directives
        if not is_specified_directive(d) and not _is_federation_directive(d)
    ]
    types = [
        print_type(_client_type(t, graphql_schema))
        for name, t in sorted(graphql_schema.type_map.items())
        if not is_introspection_type(t)
        and not is_specified_scalar_type(t)
        and not is_federation_type(name)
    ]
    return "\n\n".join(directives + types)


def subgraph_sdl(schema: strawberry.Schema) -> str:
    """The subgraph SDL a gateway composes (schema.subgraph.graphql): `_service { sdl }`."""
    return schema.as_str()
