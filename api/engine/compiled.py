"""Object plans compiled to Python functions: the sync pass over one object's fields.

`Run.fields` interprets an `ObjectPlan`: per field it asks the plan what kind of field it is,
how to complete it, whether it waits. All of that is known once the plan is made, so each
object plan is compiled (`compile_object`) into one function that does only the work its
fields need, in response order:

- `__typename` is a constant;
- an async resolver goes to the run's collector, as `Run.fields` puts it there;
- a derived field (a sync method of its object alone) is called inline, its value completed
  as an attribute's is;
- an attribute whose value is its own serialization (a str, a bool, an int within 32 bits)
  is stored as it is read, an enum member as its name, a date or time as its `isoformat`;
- an attribute holding an object, or a list of objects, is completed by the compiled function
  of that object's plan, with its path, and with a `Slot` only where something below it waits;
- anything else (a sync resolver with arguments, info or rules, or whose value is a list; a
  value rule, a null, an error, a value of an unexpected type) takes `Run.field`, the general
  path, which holds every rule.

The semantics stay `Run`'s, which the differential test holds to graphql-core: the fast paths
only skip checks whose outcome the value's exact type already decides, and an error found in
a nested object is located and propagated as `Run.field` does (`Run.failed`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from graphql import located_error
from graphql.pyutils import Path

from api.engine.plan import (
    ATTRIBUTE,
    DERIVED,
    INT_NAME,
    LEAF,
    LIST,
    OBJECT,
    RESOLVER,
    TYPENAME,
    Completion,
    FieldPlan,
    ObjectPlan,
)
from sources.cache.entity import Stale
from sources.dataloader import MISSING

if TYPE_CHECKING:
    from api.engine.run import Run

# `Run`, a source object, its path and its slot -> the object's completed fields.
ObjectFunction = Callable[["Run", Any, Path | None, Any], dict[str, Any]]

# An attribute the source does not have (`Run.field` reports it), or a loaded value not at hand
# (the dataloader's own marker, so that `DataLoader.now`'s answer needs no translation).
_ABSENT: Any = MISSING
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def waits(plan: ObjectPlan) -> bool:
    """Whether anything under an object of this plan may wait (an async resolver, or an
    awaitable item of a list a resolver returns, as Strawberry's own `_entities` gives): only then
    do its positions need slots, for a null found later to reach its nearest nullable parent."""
    cached = plan.waits
    if cached is None:
        cached = plan.waits = any(
            field.deferred
            or (field.kind == RESOLVER and field.completion.kind == LIST)
            or _completion_waits(field.completion)
            for field in plan.fields
        )
    return cached


def _completion_waits(completion: Completion) -> bool:
    while completion.item is not None:
        completion = completion.item
    if completion.object is not None:
        return waits(completion.object)
    return any(waits(possible) for possible in completion.possible.values())


def compile_object(plan: ObjectPlan, *, optimistic: bool = False) -> ObjectFunction:
    """The plan's compiled function (made once, kept on the plan): for `Run`, or for
    `api.engine.optimistic.OptimisticRun` (`optimistic`), whose function also answers each
    loaded field whose value is at hand in its pass, and stops at any error."""
    if optimistic:
        if plan.compiled_optimistic is None:
            plan.compiled_optimistic = _Writer(plan, optimistic=True).function()
        return plan.compiled_optimistic
    if plan.compiled is None:
        plan.compiled = _Writer(plan).function()
    return plan.compiled


class _Writer:
    def __init__(self, plan: ObjectPlan, *, optimistic: bool = False) -> None:
        self.plan = plan
        self.optimistic = optimistic
        self.names: dict[str, Any] = {
            "Path": Path,
            # `Path(...)` goes through namedtuple's Python `__new__`; this is the C call it makes
            # (and makes a `Slot`, also a named tuple).
            "_new": tuple.__new__,
            "located_error": located_error,
            "_ABSENT": _ABSENT,
            "_INT_MIN": _INT_MIN,
            "_INT_MAX": _INT_MAX,
        }
        self.lines: list[str] = []

    def bind(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def function(self) -> ObjectFunction:
        from api.engine.run import FieldInfo, Slot, abandon  # run imports this module

        self.names["Slot"] = Slot
        if self.optimistic:
            from api.engine.optimistic import OrderMatters  # it imports run, which imports this

            self.names.update(OrderMatters=OrderMatters, Stale=Stale, FieldInfo=FieldInfo)
        # What waits under an object that fails never starts: its awaitable items are closed.
        self.names["abandon"] = abandon
        collects = any(field.deferred for field in self.plan.fields) or waits(self.plan)
        self.emit(0, "def complete(run, source, path, slot):")
        self.emit(1, "out = {}")
        self.emit(1, "field = run.field")
        if collects:
            # As `Run.fields`: what waits under this object is one item of the outer collector.
            self.emit(1, "outer = run.collector")
            self.emit(1, "mine = run.collector = []")
            self.emit(1, "try:")
        body = 2 if collects else 1
        for field in self.plan.fields:
            self.field(body, field)
        if collects:
            self.emit(1, "except BaseException:")
            self.emit(2, "abandon(mine)")
            self.emit(2, "raise")
            self.emit(1, "finally:")
            self.emit(2, "run.collector = outer")
            self.emit(1, "if mine:")
            self.emit(2, "outer.append(mine)")
        self.emit(1, "return out")
        namespace = dict(self.names)
        source = "\n".join(self.lines)
        # The document's text enters the source only as response keys, written as repr()
        # string literals (and GraphQL names are letters, digits and underscores anyway);
        # attribute names are the Strawberry fields' Python names.
        code = compile(source, f"<plan of {self.plan.type_.name}>", "exec")
        exec(code, namespace)
        function: ObjectFunction = namespace["complete"]
        return function

    def field(self, at: int, field: FieldPlan) -> None:
        key = repr(field.key)
        plan = self.bind("F", field)
        general = f"out[{key}] = field({plan}, source, path, out, slot)"
        if field.kind == TYPENAME:
            self.emit(at, f"out[{key}] = {field.parent_name!r}")
            return
        if field.deferred and self.optimistic and field.loaded is not None:
            if field.value_rule is None:
                self.loaded(at, field, plan, key)
                return
        if field.deferred:
            self.emit(at, f"mine.append(({plan}, source, path, out, slot))")
            self.emit(at, f"out[{key}] = None")
            return
        if field.kind == DERIVED:
            self.derived(at, field, plan, key)
            return
        if field.kind != ATTRIBUTE or field.value_rule is not None:
            self.emit(at, general)
            return
        self.emit(at, "try:")
        self.emit(at + 1, f"value = source.{field.attribute}")
        self.emit(at, "except AttributeError:")
        self.emit(at + 1, "value = _ABSENT")
        self.completed(at, field, plan, key, general)

    def derived(self, at: int, field: FieldPlan, plan: str, key: str) -> None:
        """A field computed from its object alone: its method called here, its error located
        on its path as `Run.field` locates it, its value completed by the fast paths."""
        method = self.bind("R", field.resolver)
        here = f"_new(Path, (path, {key}, {field.parent_name!r}))"
        self.emit(at, "try:")
        self.emit(at + 1, f"value = {method}(source)")
        self.emit(at, "except Exception as raw:")
        self.emit(at + 1, f"out[{key}] = run.failed({plan}, raw, {here})")
        self.emit(at, "else:")
        general = f"out[{key}] = run.complete_at({plan}, value, {here}, out, slot)"
        self.completed(at + 1, field, plan, key, general)

    def loaded(self, at: int, field: FieldPlan, plan: str, key: str) -> None:
        """A loaded field in an optimistic pass: its value, when the loader has it at hand,
        completed here as an attribute's value is; else the field waits as `Run` makes it
        wait. Any error (a refusal, a failed key, a value that does not complete) stops the
        attempt: `OrderMatters`."""
        assert field.loaded is not None
        loaded = self.bind("L", field.loaded)
        here = f"_new(Path, (path, {key}, {field.parent_name!r}))"
        self.emit(at, "try:")
        if field.permissions:
            # Its info is made only when the check has to run (`Run.allowed`).
            self.emit(at + 1, f"if {plan} not in run.allowed:")
            self.emit(at + 2, f"run.check({plan}, source, FieldInfo(run.context, {here},")
            self.emit(at + 3, f"{field.name!r}), {{}})")
        self.emit(at + 1, f"wanted = {loaded}.key(source)")
        self.emit(at + 1, "if wanted is None:")
        self.emit(at + 2, f"value = {loaded}.convert(source, None)")
        self.emit(at + 1, "else:")
        self.emit(at + 2, f"value = {loaded}.loader(run.loaders).now(wanted)")
        self.emit(at + 2, "if value is not _ABSENT:")
        self.emit(at + 3, "if type(value) is Stale:")
        self.emit(at + 4, "raise OrderMatters")  # its mark's place is graphql-core's
        self.emit(at + 3, f"value = {loaded}.convert(source, value)")
        self.emit(at, "except Exception:")
        self.emit(at + 1, "raise OrderMatters from None")
        self.emit(at, "if value is _ABSENT:  # not at hand: it waits for its batch")
        self.emit(at + 1, f"mine.append(({plan}, source, path, out, slot))")
        self.emit(at + 1, f"out[{key}] = None")
        self.emit(at, "else:")
        # What no fast path below takes: `Run.complete`, any error of it stopping the attempt.
        general = f"out[{key}] = run.complete_at({plan}, value, {here}, out, slot)"
        self.completed(at + 1, field, plan, key, general)

    def completed(self, at: int, field: FieldPlan, plan: str, key: str, general: str) -> None:
        """The completion of a field's `value`, by the fast path its completion allows."""
        completion = field.completion
        if completion.kind == LEAF:
            self.leaf(at, field, key, general)
        elif completion.kind == OBJECT:
            self.object(at, field, plan, key, general)
        elif completion.item is not None and completion.item.kind == OBJECT:
            self.object_list(at, field, plan, key, general)
        else:
            self.emit(at, general)

    def leaf(self, at: int, field: FieldPlan, key: str, general: str) -> None:
        completion = field.completion
        if completion.passthrough is not None:
            kind = self.bind("T", completion.passthrough)
            self.emit(at, f"if type(value) is {kind}:")
            self.emit(at + 1, f"out[{key}] = value")
        elif completion.type_name == INT_NAME:
            self.emit(at, "if type(value) is int and _INT_MIN <= value <= _INT_MAX:")
            self.emit(at + 1, f"out[{key}] = value")
        elif completion.iso_type is not None:
            kind = self.bind("D", completion.iso_type)
            self.emit(at, f"if type(value) is {kind}:")
            self.emit(at + 1, f"out[{key}] = value.isoformat()")
        elif completion.members is not None:
            # An enum member: its name, worked out when the plan was made.
            kind = self.bind("E", completion.enum_class)
            members = self.bind("M", completion.members)
            self.emit(at, f"if type(value) is {kind}:")
            self.emit(at + 1, f"out[{key}] = {members}[value._name_]")
        else:
            self.emit(at, general)
            return
        self.emit(at, "else:")
        self.emit(at + 1, general)

    def object(self, at: int, field: FieldPlan, plan: str, key: str, general: str) -> None:
        child = field.completion.object
        assert child is not None
        function = self.bind("C", compile_object(child, optimistic=self.optimistic))
        self.emit(at, f"if {self.usable(child)}:")
        self.emit(at + 1, f"here = _new(Path, (path, {key}, {field.parent_name!r}))")
        slot = f"_new(Slot, (slot, out, {key}, here, {field.completion.non_null}))"
        self.emit(at + 1, "try:")
        self.emit(at + 2, f"out[{key}] = {function}(run, value, here, {self.slot(child, slot)})")
        self.emit(at + 1, "except Exception as raw:")
        self.emit(at + 2, f"out[{key}] = run.failed({plan}, raw, here)")
        self.emit(at, "else:")
        self.emit(at + 1, general)

    def object_list(self, at: int, field: FieldPlan, plan: str, key: str, general: str) -> None:
        """A list of objects, completed as `Run.complete` completes a list: items in order,
        what waits under the list one item of the collector, an item's error located on its
        index and nulling the list when the item is non-null."""
        item = field.completion.item
        assert item is not None and item.object is not None
        child = item.object
        function = self.bind("C", compile_object(child, optimistic=self.optimistic))
        completion = self.bind("I", item)
        item_slot = f"_new(Slot, (own, items, index, at, {item.non_null}))"
        self.emit(at, "if type(value) is list:")
        self.emit(at + 1, f"here = _new(Path, (path, {key}, {field.parent_name!r}))")
        self.emit(at + 1, "items = []")
        self.emit(at + 1, "try:")
        waiting = waits(child)
        if waiting:
            self.emit(
                at + 2, f"own = _new(Slot, (slot, out, {key}, here, {field.completion.non_null}))"
            )
            self.emit(at + 2, "list_outer = run.collector")
            self.emit(at + 2, "list_mine = run.collector = []")
            self.emit(at + 2, "try:")
        body = at + 3 if waiting else at + 2
        self.emit(body, "for index, element in enumerate(value):")
        self.emit(body + 1, "at = _new(Path, (here, index, None))")
        self.emit(body + 1, "try:")
        self.emit(body + 2, f"if {self.usable(child, 'element')}:")
        self.emit(
            body + 3,
            f"items.append({function}(run, element, at, {self.slot(child, item_slot)}))",
        )
        self.emit(body + 2, "else:")
        self.emit(body + 3, f"items.append(run.complete({completion}, element, {plan},")
        self.emit(body + 4, f"at, items, index, {'own' if waiting else 'None'}))")
        self.emit(body + 1, "except Exception as raw:")
        self.emit(body + 2, f"error = located_error(raw, {plan}.nodes, at.as_list())")
        if item.non_null:
            self.emit(body + 2, "raise error from None")
        else:
            self.emit(body + 2, "run.add_error(error, at)")
            self.emit(body + 2, "items.append(None)")
        if waiting:
            self.emit(at + 2, "except BaseException:")
            self.emit(at + 3, "abandon(list_mine)")
            self.emit(at + 3, "raise")
            self.emit(at + 2, "finally:")
            self.emit(at + 3, "run.collector = list_outer")
            self.emit(at + 2, "if list_mine:")
            self.emit(at + 3, "list_outer.append(list_mine)")
        self.emit(at + 2, f"out[{key}] = items")
        self.emit(at + 1, "except Exception as raw:")
        self.emit(at + 2, f"out[{key}] = run.failed({plan}, raw, here)")
        self.emit(at, "else:")
        self.emit(at + 1, general)

    def usable(self, child: ObjectPlan, value: str = "value") -> str:
        """The condition under which a value goes straight to its object's function: not
        null, not an error, and of the object's type where the type says how to tell."""
        condition = f"{value} is not None and {value} is not _ABSENT"
        condition += f" and not isinstance({value}, Exception)"
        if child.is_type_of is not None:
            check = self.bind("is_type_of", child.is_type_of)
            condition += f" and {check}({value}, None)"
        return condition

    def slot(self, child: ObjectPlan, slot: str) -> str:
        return slot if waits(child) else "None"
