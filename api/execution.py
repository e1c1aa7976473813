"""Execute a parsed, validated document with the c360 schema.

The HTTP endpoint and the bench's engine floor both run operations through `execute`, so the
floor measures exactly the engine the service runs. A query runs on c360's engine
(`api.engine`) from a plan compiled once per document and operation; what a plan does not cover
runs through graphql-core, with Strawberry's execution context class.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from typing import Any

import orjson
import strawberry
from graphql import DocumentNode, ExecutionResult
from graphql import execute as graphql_execute
from graphql.execution.executor import Executor as ExecutionContext
from graphql.execution.values import get_variable_values
from strawberry.execution.is_awaitable import optimized_is_awaitable

from api.engine.optimistic import run_plan
from api.engine.plan import OperationPlan, UnsupportedError, compile_operation
from api.engine.replay import Recording, Replay, recording_loaders
from api.settings import Engine
from resolvers.context import Context

log = logging.getLogger(__name__)

MAX_PLANS = 1024


def _letting_go(base: type[ExecutionContext[Any]]) -> type[ExecutionContext[Any]]:
    """`base`, letting go of the request once it has built the response.

    graphql-core's execution context sits in a reference cycle of its own (its resolve-info
    helpers hold its bound methods), so whatever it holds waits for the collector: the request's
    context, its loaders and every record they fetched, promoted to the oldest generation by
    then. A full collection over that heap paused the loop for 459 ms after the federation
    workloads. Dropping the context at the end frees all of it by reference counting.
    """

    class LettingGo(base):  # type: ignore[valid-type, misc]
        def build_response(self, data: dict[str, Any] | None) -> Any:
            try:
                return super().build_response(data)
            finally:
                self.context_value = None
                self.root_value = None

    LettingGo.__name__ = LettingGo.__qualname__ = f"{base.__name__}LettingGo"
    return LettingGo


class EngineMismatchError(RuntimeError):
    """The engine and graphql-core answered one request differently (`Engine.DIFFERENTIAL`)."""


class Executor:
    """Runs operations of one schema: on c360's engine, graphql-core, or both (`engine`)."""

    def __init__(self, schema: strawberry.Schema, engine: Engine = Engine.PLAN) -> None:
        self.schema = schema
        self.engine = engine
        self._graphql_schema = schema._schema
        self._kwargs: dict[str, Any] = {
            "executor_class": _letting_go(schema.execution_context_class or ExecutionContext)
        }
        # By document identity: each entry keeps its document alive, so an id is never
        # reused while its entry stands.
        self._plans: OrderedDict[
            tuple[int, str | None], tuple[DocumentNode, OperationPlan | None]
        ] = OrderedDict()

    def plan(self, document: DocumentNode, operation_name: str | None) -> OperationPlan | None:
        """The engine's plan of an operation, or None when graphql-core runs it."""
        key = (id(document), operation_name)
        entry = self._plans.get(key)
        if entry is not None and entry[0] is document:
            self._plans.move_to_end(key)
            return entry[1]
        plan: OperationPlan | None
        try:
            plan = compile_operation(self._graphql_schema, document, operation_name, self.schema)
        except UnsupportedError as reason:
            log.debug("graphql-core runs this operation: %s", reason)
            plan = None
        self._plans[key] = (document, plan)
        if len(self._plans) > MAX_PLANS:
            self._plans.popitem(last=False)
        return plan

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
        plan = None if self.engine is Engine.GRAPHQL_CORE else self.plan(document, operation_name)
        if (
            plan is not None
            and self.engine is Engine.DIFFERENTIAL
            and not plan.reads_outside_loaders
        ):
            return await self._differential(
                plan, document, context, variables, operation_name, hide_suggestions
            )
        if plan is not None:
            return await self._run(plan, context, variables, hide_suggestions)
        return await self.execute_with_graphql_core(
            document,
            context,
            variables=variables,
            operation_name=operation_name,
            extensions=extensions,
            hide_suggestions=hide_suggestions,
        )

    async def _run(
        self,
        plan: OperationPlan,
        context: Any,
        variables: dict[str, Any] | None,
        hide_suggestions: bool,
    ) -> ExecutionResult:
        coerced = get_variable_values(
            self._graphql_schema,
            plan.operation.variable_definitions or (),
            variables or {},
            max_errors=50,
            hide_suggestions=hide_suggestions,
        )
        if isinstance(coerced, list):
            return ExecutionResult(None, coerced)
        return await run_plan(plan, context, coerced, hide_suggestions)

    async def execute_with_graphql_core(
        self,
        document: DocumentNode,
        context: Any,
        *,
        variables: dict[str, Any] | None = None,
        operation_name: str | None = None,
        extensions: dict[str, Any] | None = None,
        hide_suggestions: bool = False,
    ) -> ExecutionResult:
        """`execute` through graphql-core alone: the reference the engine is held to."""
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

    async def _differential(
        self,
        plan: OperationPlan,
        document: DocumentNode,
        context: Any,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        hide_suggestions: bool,
    ) -> ExecutionResult:
        """The engine's result, once graphql-core has answered the same request the same way.

        The engine answers first, on the request's own loaders, recording what they fetched.
        Then the engine and graphql-core each answer again on loaders replaying that recording
        (no store is asked twice), and must give the same bytes: data, errors in order, stale
        marks and audit entries. The first answer must hold the same content; only the order
        of its errors may differ, since it depends on which store answered first.

        An operation with a field that reads a store outside the loaders (the audit log) is
        answered by the engine alone: a second run could see other rows.
        """
        if not isinstance(context, Context) or context.loaders is not context.request_loaders:
            raise EngineMismatchError("the differential check runs over HTTP contexts only")
        recording: Recording = {}
        first = _Capture(context, recording_loaders(context.request_loaders, recording), True)
        # Each run gets its own copy of the variables, as each request parses its own.
        result = await self._run(plan, first.context, _copy(variables), hide_suggestions)
        if plan.reads_outside_loaders:
            # Known only once the plan has run (object plans are made as they are reached):
            # the first run of a document with such a field is answered alone too.
            return result
        replay = Replay(context.request_loaders, recording)
        again = _Capture(context, replay.loaders(), False)
        repeated = await self._run(plan, again.context, _copy(variables), hide_suggestions)
        core = _Capture(context, replay.loaders(), False)
        reference = await self.execute_with_graphql_core(
            document,
            core.context,
            variables=_copy(variables),
            operation_name=operation_name,
            hide_suggestions=hide_suggestions,
        )
        _compare(core.fingerprint(reference), again.fingerprint(repeated), "on the same loaders")
        _compare(
            core.fingerprint(reference, ordered=False),
            first.fingerprint(result, ordered=False),
            "on the request's own loaders",
        )
        return result


def _copy(variables: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if variables is None else orjson.loads(orjson.dumps(variables))


def _compare(theirs: bytes, ours: bytes, where: str) -> None:
    if ours == theirs:
        return
    at = next(
        (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
        min(len(ours), len(theirs)),
    )
    log.error(
        "engine and graphql-core differ %s, at byte %d:\nengine:       %s\ngraphql-core: %s",
        where,
        at,
        ours[max(0, at - 200) : at + 300],
        theirs[max(0, at - 200) : at + 300],
    )
    raise EngineMismatchError(
        f"the engine and graphql-core answered differently {where}, from byte {at}: "
        f"{ours[at : at + 120]!r} against {theirs[at : at + 120]!r}"
    )


class _Capture:
    """A copy of a request's context on other loaders, whose audit entries are captured (and
    also recorded for the request, with `forward`); stale marks go to the request's context
    only with `forward`."""

    def __init__(self, context: Context, loaders: Any, forward: bool) -> None:
        self.audit = _AuditCapture(context.connections, forward=forward)
        connections: Any = self.audit  # a stand-in: everything but `audit` is the request's
        self.context = dataclasses.replace(
            context,
            connections=connections,
            request_loaders=loaders,
            stale=context.stale if forward else [],
            audit_reads=context.audit_reads if forward else [],
        )

    def fingerprint(self, result: ExecutionResult, *, ordered: bool = True) -> bytes:
        return _fingerprint(result, self.context.stale, self.audit.entries, ordered=ordered)


class _AuditCapture:
    """Connections whose audit log is captured (and passed on, with `forward`)."""

    def __init__(self, connections: Any, *, forward: bool) -> None:
        self._connections = connections
        self._forward = forward
        self.entries: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connections, name)

    @property
    def audit(self) -> _AuditCapture:
        return self

    def record(self, **entry: Any) -> None:
        self.entries.append(entry)
        if self._forward:
            self._connections.audit.record(**entry)


def _fingerprint(
    result: ExecutionResult,
    stale: list[dict[str, Any]],
    audit: list[dict[str, Any]],
    *,
    ordered: bool,
) -> bytes:
    """Everything a client or the audit log could tell of a result, as bytes."""
    errors: list[Any] = [
        {
            "message": e.message,
            "locations": [(loc.line, loc.column) for loc in e.locations or ()],
            "path": e.path,
            "extensions": e.extensions,
            "original": [type(e.original_error).__qualname__, str(e.original_error)],
        }
        for e in result.errors or ()
    ]
    # Audit entries as a multiset: what a request read, not in which order the fields that
    # read it happened to complete (the engine completes synchronous fields sooner).
    entries = sorted(orjson.dumps(entry, default=str) for entry in audit)
    if not ordered:
        errors = sorted(orjson.dumps(error, default=str) for error in errors)
        stale = sorted(stale, key=lambda mark: orjson.dumps(mark))
    return orjson.dumps(
        {"data": result.data, "errors": errors, "stale": stale, "audit": entries}, default=str
    )
