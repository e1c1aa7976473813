"""Execute a parsed, validated document with the c360 schema: the one execution path.

The HTTP endpoint and the bench's engine floor both run operations through `execute`, so the
floor measures exactly the engine the service runs.
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import DocumentNode, ExecutionResult
from graphql import execute as graphql_execute
from strawberry.execution.is_awaitable import optimized_is_awaitable


class Executor:
    """Runs operations of one schema with Strawberry's execution context class."""

    def __init__(self, schema: strawberry.Schema) -> None:
        self.schema = schema
        self._graphql_schema = schema._schema
        self._kwargs: dict[str, Any] = {}
        if schema.execution_context_class is not None:
            self._kwargs["executor_class"] = schema.execution_context_class

    async def execute(
        self,
        document: DocumentNode,
        context: Any,
        *,
        variables: dict[str, Any] | None = None,
        operation_name: str | None = None,
        extensions: dict[str, Any] | None = None,
        hide_suggestions: bool = False,
    ) -> ExecutionResult:
        """The result of one operation; resolver errors are in `errors`, never raised."""
        result = graphql_execute(
            self._graphql_schema,
            document,
            context_value=context,
            variable_values=variables,
            operation_name=operation_name,
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
            operation_extensions=extensions,
            hide_suggestions=hide_suggestions,
            **self._kwargs,
        )
        if isinstance(result, ExecutionResult):
            return result
        return await result
