"""How errors reach clients: known outcomes with their code, everything else masked and logged."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaskErrors

from sources.errors import SourceError
from sources.sql.idempotency import IdempotencyConflictError

log = logging.getLogger("c360.errors")

INTERNAL = "INTERNAL_SERVER_ERROR"
# A document or its variables refused before execution, by a rule that names no code of its own.
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
# A document that is not GraphQL (the codes Apollo clients know).
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"


# The code of a request refused before any GraphQL runs, by its HTTP status, on every route.
STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    503: "SERVICE_UNAVAILABLE",
}


def request_errors(message: str, status: int, code: str | None = None) -> dict[str, Any]:
    """The body of a refused request, on /graphql and /events alike: GraphQL's `errors`, one
    error with the message and a code (`code`, else the status's)."""
    named = code or STATUS_CODES.get(status, "BAD_REQUEST")
    return {"errors": [{"message": message, "extensions": {"code": named}}]}


def with_code(error: GraphQLError, code: str) -> GraphQLError:
    """`error` with `code` in its extensions, unless it names one already."""
    if (error.extensions or {}).get("code"):
        return error
    return GraphQLError(
        error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions={**(error.extensions or {}), "code": code},
    )


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


def coded_error(error: GraphQLError) -> GraphQLError:
    """`error` as `format_error` shows it, for a transport that sends `GraphQLError.formatted`.

    Over a WebSocket no status tells a refused document from a failed field, so an error that
    names no code (graphql-core's validation) gets one too.
    """
    if isinstance(error, GraphQLSyntaxError):
        return error  # the transport closes the socket with 4400 for it, by its type
    formatted = format_error(error)
    extensions = formatted.get("extensions") or {"code": VALIDATION_FAILED}
    return GraphQLError(
        formatted["message"],
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


class CodedErrors(MaskErrors):
    """Errors of Strawberry's own execution (subscriptions over WebSocket) as `coded_error`
    shows them: with their code, an unexpected one masked and logged."""

    def __init__(self) -> None:
        # Every error is rewritten (to carry its code), not only the masked ones.
        super().__init__(should_mask_error=lambda _: True)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        """The client's view of `error`."""
        return coded_error(error)
