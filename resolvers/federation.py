"""c360 as an Apollo Federation 2 subgraph, and the two SDLs printed from one schema.

The served schema is a federation schema: `Customer @key(fields: "id") @key(fields: "email")`,
`Order @key(fields: "id")` and `Product @key(fields: "sku")`, with `_service { sdl }` and
`_entities(representations:)` on `Query` for a gateway.

Strawberry's `_entities` would call each type's `resolve_reference` for one representation
after another. c360's gives each type's representations to its `resolve_references` at once
(`Customer`, `Order`, `Product`), which asks its loader for all of them in one batch: 100
representations cost one round trip per source, like 100 ids in `customers(ids:)`, and no
coroutine each; `tests/federation/test_entities.py` counts them.

Two SDLs come out of it:
- `client_sdl`: what clients see and `schema.graphql` holds, with none of federation's
  additions (no `_entities`, `_service`, `_Any`, `_Entity`, `@key`, `@link`, ...);
- `subgraph_sdl`: what a gateway composes (`schema.subgraph.graphql`), Strawberry's own print of
  the federation schema, the same text `_service { sdl }` answers.

`Subgraph` checks each representation against its type's keys before Strawberry sees it: a
representation is the client's input, so a malformed one (no or an unknown `__typename`, a type
without a key, fields of no key, a value of the wrong type) is a `BAD_USER_INPUT` error at its
index, never an exception inside Strawberry or a `resolve_references`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import strawberry
from graphql import (
    GraphQLDirective,
    GraphQLError,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    get_named_type,
    is_introspection_type,
    is_specified_directive,
    is_specified_scalar_type,
    print_directive,
    print_type,
)
from graphql.pyutils import inspect
from strawberry.federation.schema import FederationAny
from strawberry.federation.schema_directives import Key

# Strawberry reads the annotations of `Subgraph.entities_resolver` by name from this module.
from resolvers.common import Info, UserInputError

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


@dataclass(frozen=True, slots=True)
class _Entity:
    """What a representation of one entity type may carry: the fields of one of its keys."""

    keys: tuple[frozenset[str], ...]
    scalars: Mapping[str, GraphQLScalarType]
    fields: frozenset[str]  # of any of its keys


class Subgraph(strawberry.federation.Schema):
    """Strawberry's federation schema, with every representation checked before it resolves."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._entities = _entity_types(self)
        # The class of each entity type: its `resolve_references` resolves representations.
        self._origins: dict[str, Any] = {
            name: self.schema_converter.type_map[name].definition.origin  # type: ignore[union-attr]
            for name in self._entities
        }
        for name, origin in self._origins.items():
            if not hasattr(origin, "resolve_references"):
                raise TypeError(f"the entity type {name} has no `resolve_references`")

    # Async where Strawberry's is sync: Strawberry makes `_entities` from this method, so
    # `_entities` is an async field, which awaits the batches its answer is made of.
    async def entities_resolver(  # type: ignore[override]
        self, info: Info, representations: list[FederationAny]
    ) -> list[FederationAny]:
        """`_entities`: each representation's entity, or the error that says what is wrong
        with it or why it may not be read, in the order given. The representations of one
        type go to its `resolve_references` together: one loader batch per source for a
        hundred of them, and no coroutine per representation."""
        entities: list[Any] = [self._checked(r) for r in representations]
        by_type: dict[str, list[int]] = {}
        for index, checked in enumerate(entities):
            if not isinstance(checked, UserInputError):
                by_type.setdefault(checked.pop("__typename"), []).append(index)

        async def resolve(typename: str, indexes: list[int]) -> None:
            origin = self._origins[typename]
            try:
                found = await origin.resolve_references(info, [entities[i] for i in indexes])
            except Exception as error:  # a bug: its representations fail, the others answer
                found = [error] * len(indexes)
            for index, entity in zip(indexes, found, strict=True):
                entities[index] = entity

        if len(by_type) == 1:
            [(typename, indexes)] = by_type.items()
            await resolve(typename, indexes)
        else:  # several types, side by side
            await asyncio.gather(*(resolve(t, i) for t, i in by_type.items()))
        return entities

    def _checked(self, representation: object) -> dict[str, Any] | UserInputError:
        """A representation whose key values are parsed by their scalar, or why it is not one."""
        typename = representation.get("__typename") if isinstance(representation, dict) else None
        entity = self._entities.get(typename) if isinstance(typename, str) else None
        if not isinstance(representation, dict) or entity is None:
            names = ", ".join(sorted(self._entities))
            got = typename if isinstance(representation, dict) else representation
            return UserInputError(
                f"A representation is an object whose `__typename` names an entity type "
                f"({names}); got {inspect(got)}."
            )
        fields = set(representation) - {"__typename"}
        if not fields <= entity.fields or not any(key <= fields for key in entity.keys):
            keys = " or ".join(" ".join(f"`{f}`" for f in sorted(key)) for key in entity.keys)
            return UserInputError(
                f"A {typename} representation carries the fields of one of its keys ({keys}); "
                f"got {', '.join(sorted(fields)) or 'none'}."
            )
        parsed: dict[str, Any] = {"__typename": typename}
        for name in sorted(fields):
            scalar = entity.scalars[name]
            try:
                parsed[name] = scalar.parse_value(representation[name])
            except GraphQLError as error:
                return UserInputError(
                    f"`{name}` of this {typename} representation: {error.message}"
                )
        return parsed


def _entity_types(schema: strawberry.federation.Schema) -> dict[str, _Entity]:
    """Every type with a `@key`, with its keys' fields and their scalars, read from the schema."""
    entities: dict[str, _Entity] = {}
    for name, converted in schema.schema_converter.type_map.items():
        definition = getattr(converted, "definition", None)
        directives = getattr(definition, "directives", None) or ()
        keys = tuple(frozenset(str(d.fields).split()) for d in directives if isinstance(d, Key))
        graphql_type = schema._schema.type_map.get(name)
        if not keys or not isinstance(graphql_type, GraphQLObjectType):
            continue
        scalars: dict[str, GraphQLScalarType] = {}
        for field in frozenset().union(*keys):
            scalar = get_named_type(graphql_type.fields[field].type)
            # c360's keys are flat, each field a scalar (a nested key would need more here).
            assert isinstance(scalar, GraphQLScalarType), f"{name}.{field}"
            scalars[field] = scalar
        entities[name] = _Entity(keys=keys, scalars=scalars, fields=frozenset(scalars))
    return entities


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
