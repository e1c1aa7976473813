"""Running a plan: one request's execution of a compiled query operation.

The semantics are graphql-core's (`graphql.execution.executor`), which the differential test
holds this module to: fields in response order, errors located on their field's path, a null
in a non-null position nulling the nearest nullable ancestor, and an error under a position
already nulled dropped.

What differs is the machinery. Fields are completed by plain recursive calls. An async
resolver is started when graphql-core would start it (so that errors come in the same order):
after the synchronous pass over its object, at once when it is that object's only pending work,
else from a loop callback of its own, as graphql-core's `gather` starts one task per awaitable.
It runs until it first waits (a loader's future, as a rule) and is resumed from that future's
callback, with no task of its own; its value is completed there. A field declared by what it
loads (`resolvers.common.loaded`) has no coroutine at all: its loader is asked directly and the
value converted from the future's callback. A loader's batch is still dispatched on a later
loop iteration, so the keys asked for by every field started before it still share one batch.
Each object and list placed in the response records where it sits (`Slot`), so a non-null
error found after its parent was placed still nulls the right ancestor. Where graphql-core
would raise that error out of a gathered task, the ancestor is nulled two loop iterations
later, as the gathering task meets the error then: errors its siblings meet meanwhile come
first. That is graphql-core's timing only in part: it also cancels the siblings still
pending and runs the pending work of an object it already gave up in the background, where
more errors may be recorded; the engine starts no such work. The data is the same; which
errors are kept can differ when several fields fail at once (the toy tests hold both).

Over 400 lines: the completion of values, the running of resolvers without tasks and the
nulling of ancestors share one `Run`'s state and one set of timing rules (the ones that keep
errors in graphql-core's order); split apart, each half would be unreadable without the other."""

from __future__ import annotations

import asyncio
import contextlib
from types import CoroutineType
from typing import Any, NamedTuple

from graphql import ExecutionResult, GraphQLError, GraphQLObjectType, located_error
from graphql.execution.values import VariableValues, get_argument_values
from graphql.pyutils import Path, inspect, is_iterable

from api.engine.compiled import ObjectFunction, compile_object, waits
from api.engine.plan import (
    ABSTRACT,
    ATTRIBUTE,
    INT_NAME,
    LEAF,
    LIST,
    OBJECT,
    TYPENAME,
    Completion,
    FieldPlan,
    ObjectPlan,
    OperationPlan,
)

_NO_INFO: Any = None
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


class FieldInfo:
    """What a resolver or a rule reads of `info` on the engine's path: the request's context,
    the field's path (with its parent type's name) and the field's name."""

    __slots__ = ("context", "field_name", "path")

    def __init__(self, context: Any, path: Path, field_name: str) -> None:
        self.context = context
        self.path = path
        self.field_name = field_name


class Slot(NamedTuple):
    """Where a completed object or list sits: its container and key, its path, whether the
    position is non-null, and the slot of the object or list that holds it.

    A tuple, as graphql-core's `Path` is, so that the compiled functions make one per object
    of a list with `tuple.__new__` (a C call) rather than a Python `__init__`."""

    parent: Slot | None
    container: dict[str, Any] | list[Any]
    key: str | int
    path: Path
    non_null: bool


# Work waiting to start, in graphql-core's awaitable structure: an async field of an object
# (its plan, source, the object's path, the object's dict and slot), an awaitable item of a
# list (a `_Resolving` made for it), or a list of such entries: everything pending under one
# object or list.
_Pending = list[Any]


class Run:
    """One execution of an operation plan for one request."""

    __slots__ = (
        "allowed",
        "arguments",
        "collector",
        "context",
        "data",
        "errors",
        "failure",
        "finished",
        "hide_suggestions",
        "live",
        "nulled",
        "scheduled",
        "task",
        "variables",
    )

    def __init__(self, context: Any, variables: VariableValues, hide_suggestions: bool) -> None:
        self.context = context
        self.variables = variables
        self.hide_suggestions = hide_suggestions
        self.errors: list[GraphQLError] = []
        self.nulled: set[Path | None] = set()
        self.arguments: dict[FieldPlan, dict[str, Any]] = {}
        # Fields whose rules read the principal alone and let it through: not checked again.
        self.allowed: set[FieldPlan] = set()
        # Resolver coroutines waiting on a future, and starts scheduled but not yet run.
        self.live: set[_Resolving] = set()
        self.scheduled = 0
        # The position of the started group's entry that what is begun now runs under, in
        # graphql-core in a task of its own (`gather` makes one per entry); None outside any.
        self.task: Path | None = None
        self.collector: _Pending = []
        self.finished: asyncio.Future[None] | None = None
        self.failure: BaseException | None = None
        self.data: dict[str, Any] | None = None

    async def execute(self, plan: OperationPlan) -> ExecutionResult:
        """The operation's result; field errors are in it, never raised."""
        root: _Pending = []
        self.collector = root
        try:
            self.data = self.object_function(plan.root)(self, None, None, None)
        except GraphQLError as error:
            self.add_error(error, None)
            self.data = None
            abandon(root)
            root.clear()
        try:
            if root:
                self.start_all(root)
            if self.live or self.scheduled:
                self.finished = asyncio.get_running_loop().create_future()
                try:
                    await self.finished
                except BaseException:
                    self.close()
                    raise
        finally:
            # The groups hold their resolvers, which hold the run: let go of them, so the
            # request's context and data are freed by reference counting, not by a collection.
            self.collector = []
        if self.failure is not None:
            raise self.failure
        return ExecutionResult(self.data, self.errors or None)

    def object_function(self, plan: ObjectPlan) -> ObjectFunction:
        """The compiled function completing an object of `plan` in this kind of run."""
        return compile_object(plan)

    def close(self) -> None:
        """Stop every resolver still waiting (the request was cancelled or timed out)."""
        self.scheduled = -1  # scheduled starts find it below zero and do nothing
        live, self.live = self.live, set()
        for resolving in live:
            if resolving.coroutine is not None:  # a `loaded` field waits with no coroutine
                resolving.coroutine.close()

    def add_error(self, error: GraphQLError, path: Path | None) -> None:
        """Record a field error, unless its position or an ancestor was already nulled."""
        nulled = self.nulled
        if None in nulled:
            return
        position = path
        while position is not None:
            if position in nulled:
                return
            position = position.prev
        nulled.add(path)
        self.errors.append(error)

    def field(
        self,
        field: FieldPlan,
        source: Any,
        path: Path | None,
        out: dict[str, Any],
        slot: Slot | None,
    ) -> Any:
        kind = field.kind
        field_path: Path | None = None
        info: FieldInfo | None = None
        try:
            if kind == ATTRIBUTE:
                value = getattr(source, field.attribute)
                if field.value_rule is not None:
                    field_path = Path(path, field.key, field.parent_name)
                    info = FieldInfo(self.context, field_path, field.name)
                    value = field.value_rule.apply_to(value, source, info)
            elif kind == TYPENAME:
                return field.parent_name
            else:
                field_path = Path(path, field.key, field.parent_name)
                info = FieldInfo(self.context, field_path, field.name)
                value = self.call(field, source, info)
                if field.value_rule is not None:
                    value = field.value_rule.apply_to(value, source, info)
            completion = field.completion
            if completion.kind == LEAF and value is not None:
                if type(value) is completion.passthrough:
                    return value
                return _leaf(completion, value)
            if field_path is None:
                field_path = Path(path, field.key, field.parent_name)
            return self.complete(completion, value, field, field_path, out, field.key, slot)
        except Exception as raw:
            if field_path is None:
                field_path = Path(path, field.key, field.parent_name)
            return self.failed(field, raw, field_path)

    def failed(self, field: FieldPlan, raw: Exception, path: Path) -> None:
        """A field's error, located on its path: raised on to the parent when the field is
        non-null, else recorded, and the field is null."""
        error = located_error(raw, field.nodes, path.as_list())
        if field.completion.non_null:
            raise error from None
        self.add_error(error, path)

    def complete_at(
        self, field: FieldPlan, value: Any, path: Path, out: dict[str, Any], slot: Slot | None
    ) -> Any:
        """A field's value in hand, completed as `field` completes it: the compiled functions'
        way for a value that none of their fast paths takes (a derived field's, a loaded
        one's at hand), since calling the field again would compute it twice."""
        try:
            return self.complete(field.completion, value, field, path, out, field.key, slot)
        except Exception as raw:
            return self.failed(field, raw, path)

    def call(self, field: FieldPlan, source: Any, info: FieldInfo) -> Any:
        """Check the field's permissions and call its resolver."""
        args = field.args
        if args is None:
            args = self.arguments.get(field)
            if args is None:
                raw = get_argument_values(
                    field.field_def, field.node, self.variables, None, self.hide_suggestions
                )
                args = self.arguments[field] = field.convert(raw)
        self.check(field, source, info, args)
        kwargs = dict(args)
        if field.info_name is not None:
            kwargs[field.info_name] = info
        for name in field.source_names:
            kwargs[name] = source
        assert field.resolver is not None
        if field.self_positional:
            return field.resolver(source, **kwargs)
        return field.resolver(**kwargs)

    def check(self, field: FieldPlan, source: Any, info: FieldInfo, args: dict[str, Any]) -> None:
        """Raise the field's refusal unless each of its permissions allows the caller."""
        if field in self.allowed:
            return
        # The rules read only what a FieldInfo holds of Strawberry's Info.
        as_info: Any = info
        for permission in field.permissions:
            if not permission.has_permission(source, as_info, **args):
                permission.on_unauthorized()
        if field.by_principal:
            self.allowed.add(field)

    def complete(
        self,
        completion: Completion,
        value: Any,
        field: FieldPlan,
        path: Path,
        container: dict[str, Any] | list[Any],
        key: str | int,
        slot: Slot | None,
    ) -> Any:
        """A resolved value completed to its type (raises for a null in a non-null position)."""
        if isinstance(value, Exception):
            raise value
        if value is None:
            if completion.non_null:
                raise TypeError(
                    f"Cannot return null for non-nullable field {field.parent_name}.{field.name}."
                )
            return None
        kind = completion.kind
        if kind == LEAF:
            return _leaf(completion, value)
        if kind == OBJECT or kind == ABSTRACT:
            plan = (
                completion.object
                if kind == OBJECT
                else self.runtime_plan(completion, value, field, path)
            )
            assert plan is not None
            # Strawberry's `is_type_of` reads no info.
            if plan.is_type_of is not None and not plan.is_type_of(value, _NO_INFO):
                raise GraphQLError(
                    f"Expected value of type '{plan.type_}' but got: {inspect(value)}.",
                    field.nodes,
                )
            # A slot only where something below waits (`api.engine.compiled.waits`).
            own = Slot(slot, container, key, path, completion.non_null) if waits(plan) else None
            return self.object_function(plan)(self, value, path, own)
        assert kind == LIST and completion.item is not None
        own = Slot(slot, container, key, path, completion.non_null)
        if type(value) is not list and not is_iterable(value):  # an ABC check, in Python
            raise GraphQLError(
                "Expected Iterable, but did not find one for field"
                f" '{field.parent_name}.{field.name}'."
            )
        item = completion.item
        items: list[Any] = []
        append = items.append
        outer = self.collector
        mine: _Pending = []
        self.collector = mine
        elements = iter(value)
        try:
            for index, element in enumerate(elements):
                if item.kind == LEAF and element is not None and type(element) is item.passthrough:
                    append(element)
                    continue
                item_path = Path(path, index, None)
                if type(element) is CoroutineType:
                    # An awaitable item (Strawberry's own `_entities` gives a coroutine each):
                    # graphql-core awaits it in a task gathered with the list's other pending
                    # work, then completes it there.
                    mine.append(
                        _Resolving.awaiting(
                            self, field, element, item, item_path, items, index, own
                        )
                    )
                    append(None)
                    continue
                try:
                    append(self.complete(item, element, field, item_path, items, index, own))
                except Exception as raw:
                    error = located_error(raw, field.nodes, item_path.as_list())
                    if item.non_null:
                        raise error from None
                    self.add_error(error, item_path)
                    append(None)
        except BaseException:
            # Nothing of a list that failed starts: what it collected, and the awaitable items
            # it had not reached yet, are closed.
            abandon(mine)
            with contextlib.suppress(Exception):  # a generator may raise as it is drained
                for rest in elements:
                    if type(rest) is CoroutineType:
                        rest.close()
            raise
        finally:
            self.collector = outer
        if mine:
            outer.append(mine)
        return items

    def runtime_plan(
        self, completion: Completion, value: Any, field: FieldPlan, path: Path
    ) -> ObjectPlan:
        """The plan of the object type a union's value is, named by the union's `resolve_type`
        and checked as graphql-core's `ensure_valid_runtime_type` checks it."""
        union = completion.abstract
        assert union is not None and union.resolve_type is not None
        info: Any = FieldInfo(self.context, path, field.name)  # Strawberry's reads `field_name`
        name = union.resolve_type(value, info, union)
        plan = completion.possible.get(name) if type(name) is str else None
        if plan is not None:
            return plan
        where = f"'{field.parent_name}.{field.name}'"
        if name is None:
            message = (
                f"Abstract type '{union}' must resolve to an Object type at runtime for field"
                f" {where}. Either the '{union}' type should provide a 'resolve_type' function"
                " or each possible type should provide an 'is_type_of' function."
            )
        elif not isinstance(name, str):
            if type(name) is CoroutineType:
                name.close()  # graphql-core would await it; no resolver of c360's is async
            message = (
                f"Abstract type '{union}' must resolve to an Object type at runtime for field"
                f" {where} with value {inspect(value)}, received '{inspect(name)}', which is"
                " not a valid Object type name."
            )
        elif name not in completion.schema_types:
            message = (
                f"Abstract type '{union}' was resolved to a type '{name}' that does not exist"
                " inside the schema."
            )
        elif not isinstance(completion.schema_types[name], GraphQLObjectType):
            message = f"Abstract type '{union}' was resolved to a non-object type '{name}'."
        else:
            message = f"Runtime Object type '{name}' is not a possible type for '{union}'."
        raise GraphQLError(message, field.nodes)

    def start_all(self, pending: _Pending) -> None:
        """Start what waits under one object or list: inline when it is one item (graphql-core
        awaits a lone awaitable itself), else from the next loop iteration, in order (as
        `gather` starts a task per awaitable). One callback starts them all: the tasks
        `gather` makes are scheduled back to back, so nothing runs between their starts."""
        if len(pending) == 1:
            self.begin(pending[0])
            return
        self.scheduled += 1
        asyncio.get_running_loop().call_soon(self.begin_scheduled, pending)

    def begin(self, item: Any) -> None:
        if type(item) is list:
            self.start_all(item)
        elif type(item) is _Resolving:
            item.begin()
        else:
            _Resolving(self, *item).begin()

    def begin_scheduled(self, pending: _Pending) -> None:
        if self.scheduled <= 0:
            abandon(pending)
            return  # closed
        self.scheduled -= 1
        begun = 0
        task = self.task
        try:
            for item in pending:
                begun += 1
                self.task = _task_position(item)
                self.begin(item)
        except BaseException as failure:
            abandon(pending[begun:])  # never to start
            self.abort(failure)
        finally:
            self.task = task
        self.check_done()

    def settle(self, resolving: _Resolving, value: Any) -> None:
        """Complete the value a resolver returned into its place in the response, and start
        what waits under it at once (graphql-core awaits it in the same task)."""
        field, info, key = resolving.field, resolving.info, resolving.key
        outer = self.collector
        mine: _Pending = []
        self.collector = mine
        try:
            if resolving.rule is not None:
                value = resolving.rule.apply_to(value, resolving.source, info)
            completed = self.complete(
                resolving.completion, value, field, info.path, resolving.out, key, resolving.slot
            )
        except Exception as raw:
            abandon(mine)
            self.fail(resolving, raw)
            return
        finally:
            self.collector = outer
        resolving.out[key] = completed  # type: ignore[index]
        if mine:
            # What waits under the value runs in the resolver's own task, in graphql-core.
            task, self.task = self.task, resolving.task
            try:
                self.start_all(mine)
            finally:
                self.task = task

    def fail(self, resolving: _Resolving, raw: Exception) -> None:
        """A resolver's error: its field (or item) is null, or its nearest nullable ancestor."""
        field, path = resolving.field, resolving.info.path
        error = located_error(raw, field.nodes, path.as_list())
        if not resolving.completion.non_null:
            resolving.out[resolving.key] = None  # type: ignore[index]
            self.add_error(error, path)
            return
        if _leaves_task(resolving):
            # In graphql-core the error leaves its task, and the task that gathered it meets
            # it later: `gather`'s callback on the next loop iteration, the gathering task on
            # the one after. Errors that siblings meet meanwhile come first.
            self.scheduled += 1
            asyncio.get_running_loop().call_soon(self.propagate, error, resolving.slot, 2)
            return
        self.null_ancestor(error, resolving.slot)

    def propagate(self, error: GraphQLError, slot: Slot | None, iterations: int) -> None:
        """Null the ancestor of a non-null error, `iterations` loop iterations from now."""
        if self.scheduled <= 0:
            return  # closed
        if iterations > 1:
            asyncio.get_running_loop().call_soon(self.propagate, error, slot, iterations - 1)
            return
        self.scheduled -= 1
        self.null_ancestor(error, slot)
        self.check_done()

    def null_ancestor(self, error: GraphQLError, slot: Slot | None) -> None:
        """A non-null position's error nulls its nearest nullable ancestor."""
        while slot is not None and slot.non_null:
            slot = slot.parent
        if slot is None:
            self.data = None
            self.add_error(error, None)
        else:
            slot.container[slot.key] = None  # type: ignore[index]
            self.add_error(error, slot.path)

    def check_done(self) -> None:
        if (
            not self.live
            and self.scheduled <= 0
            and self.finished is not None
            and not self.finished.done()
        ):
            self.finished.set_result(None)

    def abort(self, failure: BaseException) -> None:
        """Something outside any field broke: the operation fails with it."""
        if self.failure is None:
            self.failure = failure
        self.close()
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


class _Resolving:
    """An async resolver being run, or an awaitable item of a list (`awaiting`): started by
    `begin`, resumed from the future it awaits, its value completed into `out[key]`."""

    __slots__ = (
        "completion",
        "coroutine",
        "field",
        "info",
        "key",
        "out",
        "rule",
        "run",
        "slot",
        "source",
        "task",
    )

    def __init__(
        self,
        run: Run,
        field: FieldPlan,
        source: Any,
        path: Path | None,
        out: dict[str, Any],
        slot: Slot | None,
    ) -> None:
        self.run = run
        self.field = field
        self.source = source
        self.info = FieldInfo(run.context, Path(path, field.key, field.parent_name), field.name)
        self.out: dict[str, Any] | list[Any] = out
        self.key: str | int = field.key
        self.slot = slot
        self.completion = field.completion
        self.rule = field.value_rule
        self.coroutine: CoroutineType[Any, Any, Any] | None = None
        self.task: Path | None = None

    @classmethod
    def awaiting(
        cls,
        run: Run,
        field: FieldPlan,
        coroutine: CoroutineType[Any, Any, Any],
        completion: Completion,
        path: Path,
        items: list[Any],
        index: int,
        slot: Slot | None,
    ) -> _Resolving:
        """Item `index` of a list `field` gave, a coroutine: completed into `items[index]`."""
        self = cls.__new__(cls)
        self.run = run
        self.field = field
        self.source = None
        self.info = FieldInfo(run.context, path, field.name)
        self.out = items
        self.key = index
        self.slot = slot
        self.completion = completion
        self.rule = None
        self.coroutine = coroutine
        return self

    def begin(self) -> None:
        run = self.run
        self.task = run.task
        if self.coroutine is not None:  # an awaitable item
            self.advance()
            return
        if self.field.loaded is not None:
            self.load()
            return
        try:
            value = run.call(self.field, self.source, self.info)
        except Exception as raw:
            run.fail(self, raw)
            return
        if type(value) is CoroutineType:
            self.coroutine = value
            self.advance()
        else:
            run.settle(self, value)

    def advance(self) -> None:
        """Run the coroutine until it waits (on a future) or ends."""
        run = self.run
        assert self.coroutine is not None
        try:
            awaited = self.coroutine.send(None)
        except StopIteration as stop:
            run.settle(self, stop.value)
            return
        except Exception as raw:
            run.fail(self, raw)
            return
        run.live.add(self)
        if getattr(awaited, "_asyncio_future_blocking", None) is not None:
            awaited._asyncio_future_blocking = False
            awaited.add_done_callback(self.step)
        elif awaited is None:  # a bare yield (`asyncio.sleep(0)`)
            asyncio.get_running_loop().call_soon(self.step)
        else:
            raise RuntimeError(f"a resolver awaited {awaited!r}, not an asyncio future")

    def step(self, future: Any = None) -> None:
        """Resume from the future waited on: the coroutine, or a `loaded` field's value."""
        run = self.run
        if self not in run.live:
            return  # closed: the run was cancelled while this waited
        run.live.discard(self)
        try:
            if self.coroutine is not None:
                self.advance()
            else:
                self.arrived(future)
        except BaseException as failure:
            run.abort(failure)
        run.check_done()

    def load(self) -> None:
        """A `loaded` field: ask its loader, as its resolver would, without the coroutine."""
        run, field, loaded = self.run, self.field, self.field.loaded
        assert loaded is not None
        try:
            run.check(field, self.source, self.info, {})
            key = loaded.key(self.source)
            if key is None:
                value = loaded.convert(self.source, None)
            else:
                future = loaded.loader(run.context.loaders).load(key)
        except Exception as raw:
            run.fail(self, raw)
            return
        if key is None:
            run.settle(self, value)  # outside the try, as `begin` settles: it fails on its own
            return
        if future.done():  # an await of it would not have waited either
            self.arrived(future)
            return
        run.live.add(self)
        future.add_done_callback(self.step)

    def arrived(self, future: asyncio.Future[Any]) -> None:
        run, loaded = self.run, self.field.loaded
        assert loaded is not None
        info: Any = self.info  # what `finish` reads of an Info, a FieldInfo holds
        try:
            value = loaded.finish(self.source, future.result(), info)
        except Exception as raw:
            run.fail(self, raw)
            return
        run.settle(self, value)


def _leaves_task(resolving: _Resolving) -> bool:
    """Whether a non-null error of this resolver, in graphql-core, is raised out of the task it
    runs in: the task's own position (a field, a list item or an object) is non-null and lies
    between the resolver and the nearest nullable position above it."""
    root = resolving.task
    if root is None:
        return False  # awaited inline from the operation's root, in one task
    if resolving.info.path == root:
        return True  # the resolver's own position, non-null
    slot = resolving.slot
    while slot is not None and slot.non_null:
        if slot.path == root:
            return True
        slot = slot.parent
    return False


def _task_position(entry: Any) -> Path:
    """The position a group's entry completes: an async field's, an awaitable item's, or (for
    a group of its own) the object's or list's that the group waits under."""
    if type(entry) is _Resolving:
        return entry.info.path
    if type(entry) is list:
        first = entry[0]
        if type(first) is tuple:
            path: Path = first[2]  # (plan, source, the object's path, out, slot)
            return path
        above = _task_position(first).prev
        assert above is not None  # an entry's position is a field's or an item's
        return above
    field = entry[0]
    return Path(entry[2], field.key, field.parent_name)


def abandon(pending: list[Any]) -> None:
    """Close the coroutines of awaitable items that will never start (their list failed, or
    the run was closed): nothing is left to warn that it was never awaited."""
    for entry in pending:
        if type(entry) is list:
            abandon(entry)
        elif type(entry) is _Resolving and entry.coroutine is not None:
            entry.coroutine.close()


def _leaf(completion: Completion, value: Any) -> Any:
    if type(value) is int and completion.type_name == INT_NAME and _INT_MIN <= value <= _INT_MAX:
        return value
    assert completion.coerce is not None
    coerced = completion.coerce(value)
    if coerced is None:
        raise TypeError(
            f"Expected `{completion.type_name}.coerce_output_value({inspect(value)})` to return "
            f"non-nullable value, returned: {inspect(coerced)}"
        )
    return coerced
