"""Strings c360 cannot store: a NUL character (U+0000) in any input is the client's error.

PostgreSQL text cannot hold NUL, nor can a MongoDB document's keys; let through, it fails deep
in a store as an unexpected error. No name, email, phone, id or note needs one, so a request
carrying it is refused before it runs (`BAD_USER_INPUT`), over HTTP and WebSocket alike.
"""

from __future__ import annotations

from typing import Any

from graphql import DocumentNode, GraphQLError, StringValueNode, Visitor, visit

NUL = "\x00"
# How a NUL can be written in a GraphQL string literal (the lexer refuses a raw one).
_NUL_ESCAPES = ("\\u0000", "\\u{0")


def nul_error(document: DocumentNode, variables: dict[str, Any] | None) -> GraphQLError | None:
    """A BAD_USER_INPUT error when a variable or a string literal holds a NUL, else None."""
    for name, value in (variables or {}).items():
        if _holds_nul(value):
            return _refusal(f"Variable `${name}` holds")
    source = document.loc.source.body if document.loc else None
    if source is not None and not any(escape in source for escape in _NUL_ESCAPES):
        return None
    finder = _NulLiteral()
    visit(document, finder)
    return _refusal("A string in the document holds") if finder.found else None


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(NUL in key or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _refusal(what: str) -> GraphQLError:
    return GraphQLError(
        f"{what} a NUL character (U+0000), which c360 cannot store; remove it.",
        extensions={"code": "BAD_USER_INPUT"},
    )


class _NulLiteral(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if NUL in node.value:
            self.found = True
