"""How errors reach clients: known outcomes with their code, everything else masked and logged."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from sources.errors import SourceError
from sources.sql.idempotency import IdempotencyConflictError

log = logging.getLogger("c360.errors")

INTERNAL = "INTERNAL_SERVER_ERROR"


def format_error(error: GraphQLError) -> dict[str, Any]:
    """The client's view of one error; an unexpected one is logged in full and masked."""
    original = error.original_error
    formatted: dict[str, Any] = {"message": error.message}
    if error.locations:
        formatted["locations"] = [
            {"line": loc.line, "column": loc.column} for loc in error.locations
        ]
    if error.path is not None:
        formatted["path"] = error.path
    if original is None:
        if error.extensions:
            formatted["extensions"] = error.extensions
        return formatted
    if isinstance(original, SourceError):
        formatted["message"] = str(original)
        formatted["extensions"] = {"code": original.code, "source": original.source}
        return formatted
    if isinstance(original, IdempotencyConflictError):
        formatted["message"] = str(original)
        formatted["extensions"] = {"code": original.code}
        return formatted
    if isinstance(original, GraphQLError):
        formatted["message"] = original.message
        if original.extensions:
            formatted["extensions"] = original.extensions
        return formatted
    log.error("unexpected error at %s", error.path, exc_info=original)
    formatted["message"] = "Unexpected error."
    formatted["extensions"] = {"code": INTERNAL}
    return formatted
