"""Trusted documents: the allow-list of GraphQL documents, known by the SHA-256 of their text.

`c360 documents add` validates a document against the schema and stores it; a client then
sends only the hash, as Apollo's persisted queries do. A document never changes under its hash,
so an instance may remember the ones it has read for as long as it runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

import graphql
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sources.sql.engine import begin_write
from sources.sql.models import TrustedDocument, table

NAME_MAX_CHARS = 255
# Short, so that a document added by `c360 documents add` on another machine is usable within
# seconds; long enough that a client repeating an unknown hash costs SQL little.
NEGATIVE_SECONDS = 2.0
# Bounds the memory a flood of made-up hashes can take.
_MAX_UNKNOWN = 10_000
_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")

_documents = table(TrustedDocument)


class DocumentRequestError(ValueError):
    """A document cannot be trusted as given: the message says why."""


@dataclass(frozen=True, slots=True)
class TrustedDocumentInfo:
    sha256: str
    name: str | None
    added_at: dt.datetime
    body: str


def document_hash(text: str) -> str:
    """The SHA-256 hex of the document's UTF-8 text, as Apollo's persisted queries hash it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def add_document(
    *, engine: AsyncEngine, body: str, name: str | None, schema: graphql.GraphQLSchema
) -> str:
    """Trust `body` once it validates against `schema` (again: sets the name); returns its hash."""
    if name is not None and not 0 < len(name) <= NAME_MAX_CHARS:
        raise DocumentRequestError(f"a document's name is 1 to {NAME_MAX_CHARS} characters")
    try:
        document = graphql.parse(body)
    except graphql.GraphQLError as error:
        raise DocumentRequestError(f"the document does not parse: {error.message}") from error
    if not any(isinstance(d, graphql.OperationDefinitionNode) for d in document.definitions):
        raise DocumentRequestError("the document holds no operation")
    errors = graphql.validate(schema, document)
    if errors:
        messages = "; ".join(error.message for error in errors)
        raise DocumentRequestError(f"the document does not validate: {messages}")
    sha256 = document_hash(body)
    now = dt.datetime.now(dt.UTC)
    try:
        async with begin_write(engine) as connection:
            found = (
                await connection.execute(
                    select(_documents.c.name).where(_documents.c.sha256 == sha256)
                )
            ).first()
            if found is None:
                await connection.execute(
                    insert(_documents).values(sha256=sha256, name=name, body=body, added_at=now)
                )
            elif name is not None and found.name != name:
                await connection.execute(
                    update(_documents).where(_documents.c.sha256 == sha256).values(name=name)
                )
    except IntegrityError:
        pass  # the same text was added at the same moment by another caller: it is trusted
    return sha256


async def list_documents(*, engine: AsyncEngine) -> list[TrustedDocumentInfo]:
    """Every trusted document, oldest first."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                _documents.c.sha256, _documents.c.name, _documents.c.added_at, _documents.c.body
            ).order_by(_documents.c.added_at, _documents.c.sha256)
        )
        return [TrustedDocumentInfo(*row) for row in rows]


class TrustedDocuments:
    """The trusted documents by hash, read from SQL once and then remembered in-process.

    A document removed from the table by hand stays usable in a running instance until it
    restarts: c360 itself never removes one.
    """

    def __init__(self, engine: AsyncEngine, negative_seconds: float = NEGATIVE_SECONDS) -> None:
        self._engine = engine
        self._negative_seconds = negative_seconds
        self._known: dict[str, str] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()

    async def get(self, sha256: str) -> str | None:
        """The text of the trusted document with this hash, or None."""
        sha256 = sha256.lower()
        known = self._known.get(sha256)
        if known is not None:
            return known
        if not _HASH_PATTERN.fullmatch(sha256):
            return None
        until = self._unknown.get(sha256)
        if until is not None and until > time.monotonic():
            return None
        async with self._engine.connect() as connection:
            result = await connection.execute(
                select(_documents.c.body).where(_documents.c.sha256 == sha256)
            )
            body: str | None = result.scalar_one_or_none()
        if body is None:
            self._unknown[sha256] = time.monotonic() + self._negative_seconds
            self._unknown.move_to_end(sha256)
            while len(self._unknown) > _MAX_UNKNOWN:
                self._unknown.popitem(last=False)
            return None
        self._unknown.pop(sha256, None)
        self._known[sha256] = body
        return body
