"""The committed SDLs are the code's schema, and every part of the client schema is described."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import strawberry
from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType, build_schema

from api.cli import main
from resolvers.federation import FEDERATION_FIELDS, client_sdl, is_federation_type, subgraph_sdl
from resolvers.schema import create_schema

ROOT = Path(__file__).resolve().parents[2]


def test_schema_graphql_matches_the_code(capsys: object) -> None:
    exported = client_sdl(create_schema()) + "\n"
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == exported, (
        "schema.graphql is stale: run `c360 export-schema -o schema.graphql`"
    )


def test_schema_subgraph_graphql_matches_the_code() -> None:
    exported = subgraph_sdl(create_schema()) + "\n"
    committed = (ROOT / "schema.subgraph.graphql").read_text(encoding="utf-8")
    assert committed == exported, (
        "schema.subgraph.graphql is stale: run "
        "`c360 export-schema --federation -o schema.subgraph.graphql`"
    )


@pytest.mark.parametrize(
    ("flags", "printer"), [((), client_sdl), (("--federation",), subgraph_sdl)]
)
def test_export_schema_command_prints_the_sdl(
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
    printer: Callable[[strawberry.Schema], str],
) -> None:
    assert main(["export-schema", *flags]) == 0
    assert capsys.readouterr().out == printer(create_schema()) + "\n"


def test_client_sdl_has_nothing_of_federation() -> None:
    sdl = client_sdl(create_schema())
    for addition in ("_entities", "_service", "_Any", "_Entity", "_Service", "_FieldSet"):
        assert addition not in sdl
    for addition in ("@key", "@link", "link__", "federation__", "directive @"):
        assert addition not in sdl
    # It is a whole schema by itself, with what clients use.
    schema = build_schema(sdl)
    assert schema.query_type is not None
    assert {"customer", "customers", "customersByEmails"} <= set(schema.query_type.fields)


def test_subgraph_sdl_declares_the_entities_and_their_keys() -> None:
    sdl = subgraph_sdl(create_schema())
    assert '@link(url: "https://specs.apollo.dev/federation/v2.11", import: ["@key"])' in sdl
    assert 'type Customer @key(fields: "id") @key(fields: "email") {' in sdl
    assert 'type Order @key(fields: "id") {' in sdl
    assert 'type Product @key(fields: "sku") {' in sdl
    assert "_entities(representations: [_Any!]!): [_Entity]!" in sdl
    assert "union _Entity = Customer | Order | Product" in sdl


def test_every_type_field_and_argument_has_a_description() -> None:
    """Of the client schema: federation's own types and fields are Apollo's to describe."""
    schema = create_schema()._schema
    missing = []
    for name, graphql_type in schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Float", "Boolean", "ID"}:
            continue
        if is_federation_type(name):
            continue
        if not graphql_type.description:
            missing.append(name)
        if isinstance(graphql_type, GraphQLObjectType | GraphQLInputObjectType):
            for field_name, field in graphql_type.fields.items():
                if graphql_type is schema.query_type and field_name in FEDERATION_FIELDS:
                    continue
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        missing.append(f"{name}.{field_name}({arg_name})")
        if isinstance(graphql_type, GraphQLEnumType) and not graphql_type.description:
            missing.append(name)
    assert missing == []
