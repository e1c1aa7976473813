"""Trusted documents: validated against the schema, stored and found by their SHA-256."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import graphql
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from api.cli import main
from api.documents import (
    DocumentRequestError,
    TrustedDocuments,
    add_document,
    document_hash,
    list_documents,
)
from resolvers.schema import create_schema
from sources.sql.engine import create_engine


@pytest.fixture(scope="module")
def schema() -> graphql.GraphQLSchema:
    return create_schema()._schema


@pytest.fixture
async def engine(sql_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(sql_url)
    yield created
    await created.dispose()


def new_document(selection: str = "__typename") -> str:
    """A valid document no other test has: the comment is part of the hashed text."""
    return f"# {uuid.uuid4().hex}\nquery Probe {{ {selection} }}\n"


@contextlib.contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def test_the_hash_is_sha256_of_the_utf8_text() -> None:
    text = "# café\n{ __typename }"
    assert document_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert document_hash(text) == "4bfbca43e47f606275d9c7f14b217cde17aae6f8d8e6663fa088b1616d9e82fa"


async def test_an_added_document_is_found_by_its_hash(
    engine: AsyncEngine, schema: graphql.GraphQLSchema
) -> None:
    body = new_document()
    sha256 = await add_document(engine=engine, body=body, name="probe", schema=schema)
    assert sha256 == document_hash(body)

    documents = TrustedDocuments(engine)
    assert await documents.get(sha256) == body
    # Found ones are remembered for good: a hash always names the same text.
    with statements(engine) as sent:
        assert await documents.get(sha256) == body
        assert await documents.get(sha256.upper()) == body
    assert sent == []

    [listed] = [d for d in await list_documents(engine=engine) if d.sha256 == sha256]
    assert (listed.name, listed.body) == ("probe", body)


async def test_adding_again_is_harmless_and_may_rename(
    engine: AsyncEngine, schema: graphql.GraphQLSchema
) -> None:
    body = new_document()
    first = await add_document(engine=engine, body=body, name="first", schema=schema)
    assert await add_document(engine=engine, body=body, name=None, schema=schema) == first
    assert await add_document(engine=engine, body=body, name="second", schema=schema) == first
    listed = [d for d in await list_documents(engine=engine) if d.sha256 == first]
    assert [(d.name, d.body) for d in listed] == [("second", body)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("query { nope }", "does not validate: Cannot query field 'nope' on type 'Query'."),
        # Every message, in order.
        ("query { customer }", "subfields. Did you mean 'customer { ... }'?; Argument 'Query."),
        ("query {", "does not parse: Syntax Error"),
        ("", "does not parse"),
        ("fragment F on Query { __typename }", "holds no operation"),
    ],
)
async def test_an_invalid_document_is_refused_with_the_graphql_messages(
    engine: AsyncEngine, schema: graphql.GraphQLSchema, body: str, message: str
) -> None:
    with pytest.raises(DocumentRequestError) as refused:
        await add_document(engine=engine, body=body, name=None, schema=schema)
    assert message in str(refused.value)
    assert document_hash(body) not in {d.sha256 for d in await list_documents(engine=engine)}


async def test_an_unknown_hash_is_remembered_briefly(
    engine: AsyncEngine, schema: graphql.GraphQLSchema
) -> None:
    body = new_document()
    sha256 = document_hash(body)
    patient = TrustedDocuments(engine, negative_seconds=60.0)
    quick = TrustedDocuments(engine, negative_seconds=0.05)
    assert await patient.get(sha256) is None
    assert await quick.get(sha256) is None

    await add_document(engine=engine, body=body, name=None, schema=schema)
    with statements(engine) as sent:
        assert await patient.get(sha256) is None
    assert sent == []
    await asyncio.sleep(0.06)
    assert await quick.get(sha256) == body


@pytest.mark.parametrize("sha256", ["", "abc", "g" * 64, "a" * 63, "a" * 65])
async def test_a_malformed_hash_costs_no_sql(engine: AsyncEngine, sha256: str) -> None:
    with statements(engine) as sent:
        assert await TrustedDocuments(engine).get(sha256) is None
    assert sent == []


async def test_documents_are_added_from_the_command_line(
    sql_url: str,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("C360_DATABASE_URL", sql_url)
    name = f"cli-{uuid.uuid4().hex[:10]}"
    path = tmp_path / "probe.graphql"
    # The hash is of the file's exact bytes: CRLF line ends included.
    path.write_bytes(new_document().replace("\n", "\r\n").encode())
    capsys.readouterr()
    # The command runs its own event loop, as it does from a shell: off this test's loop.
    assert await asyncio.to_thread(main, ["documents", "add", str(path), "--name", name]) == 0
    sha256 = capsys.readouterr().out.strip()
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert await TrustedDocuments(engine).get(sha256) == path.read_bytes().decode()

    assert await asyncio.to_thread(main, ["documents", "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["SHA256", "NAME", "ADDED"]
    assert [sha256, name] in [row.split()[:2] for row in rows]

    invalid = tmp_path / "invalid.graphql"
    invalid.write_text("query { nope }", encoding="utf-8")
    assert await asyncio.to_thread(main, ["documents", "add", str(invalid)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Cannot query field 'nope'" in err

    missing = tmp_path / "missing.graphql"
    assert await asyncio.to_thread(main, ["documents", "add", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "cannot read" in err


@pytest.mark.parametrize("command", ["documents", "documents add", "documents list"])
def test_documents_commands_have_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    assert "usage: c360 " + command in capsys.readouterr().out
