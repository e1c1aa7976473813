"""Running a plan optimistically: in whatever order is cheapest, and again in graphql-core's
order only when that order shows.

`api.engine.run` starts every async field when graphql-core would start its task: after the
synchronous pass over its object, from a loop callback of its own when siblings wait too. That
timing is what puts errors and stale marks in graphql-core's order, and it costs a loop
iteration per level of the document, a scheduled callback per group of fields and a record per
field that waits. But order shows in nothing else: the data's keys are placed in response order
by the pass over each object, whenever their values come. So `OptimisticRun` starts what waits
under an object as soon as the object's pass ends, inline, and its objects' compiled functions
(`compile_object(plan, optimistic=True)`) answer a loaded field whose value is at hand (the
loader has it, as in a warm cache) in the object's own pass, with no record at all.

The moment something whose order would show happens (a field error, a value served stale),
the attempt stops (`OrderMatters`) and the operation runs again on `Run`, graphql-core's way,
over what the attempt loaded: the request's loaders hold every value it fetched and now hold
every failure too (`DataLoader.hold_failures`), so the second run waits on no source that the
first one already asked. The attempt runs on a copy of the request's context: its clear-text
reads are held (`Context.audit_held`) and become the request's only once it is known good, so
a read run twice is audited once, and its stale marks, like anything a task it left running
adds later, stay on the copy.

An operation that reads a store other than through the loaders (`reads_outside_loaders`) runs
on `Run` alone once that is known: run again, it could read other rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from graphql import ExecutionResult, GraphQLError
from graphql.execution.values import VariableValues
from graphql.pyutils import Path

from api.engine.compiled import ObjectFunction, compile_object, waits
from api.engine.plan import FieldPlan, ObjectPlan, OperationPlan
from api.engine.run import Run, _Pending, _Resolving, abandon
from resolvers.context import Context


class OrderMatters(BaseException):
    """The attempt met something whose place graphql-core's order decides.

    A BaseException, so that no field's `except Exception` mistakes it for the field's own
    failure: it leaves the attempt at once, wherever it was raised."""


async def run_plan(
    plan: OperationPlan,
    context: Any,
    variables: VariableValues,
    hide_suggestions: bool,
) -> ExecutionResult:
    """The operation's result: optimistically when it may be, graphql-core's way otherwise."""
    if plan.reads_outside_loaders or not waits(plan.root):
        # Nothing waits (`{ __typename }`, fields read off the root): no order to choose,
        # and no attempt worth a copy of the context.
        return await Run(context, variables, hide_suggestions).execute(plan)
    if not isinstance(context, Context):  # a schema of the tests' own, over no stores
        try:
            return await OptimisticRun(context, variables, hide_suggestions).execute(plan)
        except OrderMatters:
            return await Run(context, variables, hide_suggestions).execute(plan)
    # The attempt runs on a copy of the context that keeps its own stale marks and holds its
    # clear-text reads: what it leaves running when it stops (a task a resolver gathered)
    # may still add to them, and must not add to the request's.
    attempt = dataclasses.replace(context, stale=[], audit_reads=[], audit_held=True)
    try:
        result = await OptimisticRun(attempt, variables, hide_suggestions).execute(plan)
    except OrderMatters:
        pass
    else:
        if not attempt.stale:
            context.take_audit(attempt.audit_reads)
            return result
    for loader in context.loaders.made():
        loader.hold_failures()
    return await Run(context, variables, hide_suggestions).execute(plan)


class OptimisticRun(Run):
    """A `Run` that starts what waits at once and stops (`OrderMatters`) at the first error."""

    __slots__ = ("loaders",)

    def __init__(self, context: Any, variables: VariableValues, hide_suggestions: bool) -> None:
        super().__init__(context, variables, hide_suggestions)
        # One lookup of the (context variable backed) loaders per run, not per field.
        self.loaders: Any = getattr(context, "loaders", None)

    async def execute(self, plan: OperationPlan) -> ExecutionResult:
        try:
            return await super().execute(plan)
        except OrderMatters:
            self.close()
            raise

    def object_function(self, plan: ObjectPlan) -> ObjectFunction:
        return compile_object(plan, optimistic=True)

    # Errors: wherever graphql-core's order would place them, the attempt stops instead.

    def add_error(self, error: GraphQLError, path: Path | None) -> None:
        raise OrderMatters

    def failed(self, field: FieldPlan, raw: Exception, path: Path) -> None:
        raise OrderMatters

    def fail(self, resolving: _Resolving, raw: Exception) -> None:
        raise OrderMatters

    # Starting: inline, in the order collected (any order gives the same data).

    def start_all(self, pending: _Pending) -> None:
        for index, item in enumerate(pending):
            kind = type(item)
            try:
                if kind is tuple:
                    _Resolving(self, *item).begin()  # an async field, as `Run` begins it
                elif kind is list:
                    self.start_all(item)
                else:
                    item.begin()  # an awaitable item of a list
            except BaseException:
                abandon(pending[index + 1 :])  # never to start: awaitable items are closed
                raise
