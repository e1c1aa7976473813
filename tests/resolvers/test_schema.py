"""The committed schema.graphql is the code's schema, and every part of it is described."""

from __future__ import annotations

from pathlib import Path

from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType

from api.cli import main
from resolvers.schema import create_schema

ROOT = Path(__file__).resolve().parents[2]


def test_schema_graphql_matches_the_code(capsys: object) -> None:
    exported = create_schema().as_str() + "\n"
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert committed == exported, (
        "schema.graphql is stale: run `c360 export-schema -o schema.graphql`"
    )


def test_export_schema_command_prints_the_sdl(capsys: object) -> None:
    assert main(["export-schema"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out == create_schema().as_str() + "\n"


def test_every_type_field_and_argument_has_a_description() -> None:
    schema = create_schema()._schema
    missing = []
    for name, graphql_type in schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Float", "Boolean", "ID"}:
            continue
        if not graphql_type.description:
            missing.append(name)
        if isinstance(graphql_type, GraphQLObjectType | GraphQLInputObjectType):
            for field_name, field in graphql_type.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        missing.append(f"{name}.{field_name}({arg_name})")
        if isinstance(graphql_type, GraphQLEnumType) and not graphql_type.description:
            missing.append(name)
    assert missing == []
