"""Strings c360 cannot store (`sources.storable`): a GraphQL request whose variables or string
literals hold a NUL character is refused before it runs (`BAD_USER_INPUT`), over HTTP and
WebSocket alike, rather than failing deep in a store as an unexpected error.
"""

from __future__ import annotations

from typing import Any

from graphql import DocumentNode, GraphQLError, StringValueNode, Visitor, visit

from sources.storable import NUL, holds_nul

# How a NUL can be written in a GraphQL string literal (the lexer refuses a raw one).
_NUL_ESCAPES = ("\\u0000", "\\u{0")


def nul_error(document: DocumentNode, variables: dict[str, Any] | None) -> GraphQLError | None:
    """A BAD_USER_INPUT error when a variable or a string literal holds a NUL, else None."""
    for name, value in (variables or {}).items():
        if holds_nul(value):
            return _refusal(f"Variable `${name}` holds")
    source = document.loc.source.body if document.loc else None
    if source is not None and not any(escape in source for escape in _NUL_ESCAPES):
        return None
    finder = _NulLiteral()
    visit(document, finder)
    return _refusal("A string in the document holds") if finder.found else None


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
