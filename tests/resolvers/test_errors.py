"""How errors reach clients over the WebSocket (`GraphQLError.formatted`): each with a code."""

from __future__ import annotations

import logging

import pytest
from graphql import GraphQLError

from resolvers.errors import CodedErrors
from sources.errors import SourceTimeoutError


def shown(error: GraphQLError) -> object:
    return CodedErrors().anonymise_error(error).formatted


def test_an_unexpected_error_is_masked_with_a_code_and_logged_in_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = GraphQLError(
        "connection to 10.0.0.7 refused", path=["customerChanged"], original_error=KeyError("x")
    )
    with caplog.at_level(logging.ERROR, logger="c360.errors"):
        assert shown(error) == {
            "message": "Unexpected error.",
            "path": ["customerChanged"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    assert "KeyError" in caplog.text


def test_a_source_error_keeps_its_code_and_source() -> None:
    error = GraphQLError(
        "ignored",
        path=["customerChanged", "customer", "loyalty"],
        original_error=SourceTimeoutError("loyalty", "read timeout from 10.0.0.7"),
    )
    assert shown(error) == {
        "message": "loyalty did not answer in time",
        "path": ["customerChanged", "customer", "loyalty"],
        "extensions": {"code": "SOURCE_TIMEOUT", "source": "loyalty"},
    }


def test_a_coded_error_is_shown_as_it_is() -> None:
    error = GraphQLError("gone", extensions={"code": "EVENT_NOT_RETAINED"})
    assert shown(error) == {"message": "gone", "extensions": {"code": "EVENT_NOT_RETAINED"}}
