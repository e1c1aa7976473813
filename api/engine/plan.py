"""Plans: what running one query operation takes, worked out once per document and operation.

A plan is a tree of `ObjectPlan`s (the fields selected on one object type, merged and in
response order, as graphql-core's own field collection groups them) whose `FieldPlan`s say how
to get each value (read an attribute, call the resolver, answer `__typename`), with which
arguments, under which rules, and how to complete it (`Completion`). Nothing in a plan depends
on the caller: the rules it carries are applied at run time to the request's principal.

`compile_operation` raises `UnsupportedError` for what the engine leaves to graphql-core.

Over 400 lines: one compiler: collecting fields, choosing each field's way to its value and
completion, and carrying its rules are steps of one walk over the document and the schema."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    OperationDefinitionNode,
    OperationType,
    is_abstract_type,
    is_enum_type,
    is_leaf_type,
    is_object_type,
    visit,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values
from graphql.language import DirectiveNode, Visitor
from graphql.type import GraphQLBoolean, GraphQLID, GraphQLInt, GraphQLString
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema.types.base_scalars import isoformat
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

from resolvers.access import ValueRule
from resolvers.common import LOADED, Loaded

_DEFINITION = "strawberry-definition"
_NO_VARIABLES = VariableValues({}, {})
# Root fields the engine leaves to graphql-core: introspection and federation's SDL.
_DELEGATED_ROOT_FIELDS = frozenset({"__schema", "__type", "_service"})

# How a field gets its value. DERIVED: a sync resolver of its object alone (no arguments, no
# info, no rules) whose value is not a list, which the compiled functions call inline, as they
# read an attribute.
TYPENAME, ATTRIBUTE, RESOLVER, DERIVED = 0, 1, 2, 3
# How a value is completed.
LEAF, OBJECT, LIST, ABSTRACT = 0, 1, 2, 3


class UnsupportedError(Exception):
    """The document uses something the engine leaves to graphql-core (the message says what)."""


class Completion:
    """How a value of one output type is completed: serialized, recursed into, iterated, or
    (for a union) recursed into by the plan of the object type its `resolve_type` names."""

    __slots__ = (
        "abstract",
        "coerce",
        "enum_class",
        "iso_type",
        "item",
        "kind",
        "members",
        "non_null",
        "object",
        "passthrough",
        "possible",
        "schema_types",
        "type_name",
    )

    def __init__(self, type_: GraphQLOutputType, nodes: list[FieldNode], plans: _Compiler) -> None:
        self.non_null = isinstance(type_, GraphQLNonNull)
        inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        self.type_name = str(inner)
        self.coerce: Callable[[Any], Any] | None = None
        # The Python type whose values `coerce` returns unchanged (str for String and ID, ...).
        self.passthrough: type | None = None
        # A date or time scalar serialized by `isoformat`: the type it is made for.
        self.iso_type: type | None = None
        self.item: Completion | None = None
        self.object: ObjectPlan | None = None
        # For an enum of a Python Enum class: each member's serialization, by member name.
        self.enum_class: type | None = None
        self.members: dict[Any, Any] | None = None
        # For a union: the union, and the plan of each of its object types by name.
        self.abstract: GraphQLUnionType | None = None
        self.possible: dict[str, ObjectPlan] = {}
        self.schema_types: dict[str, Any] = {}
        if isinstance(inner, GraphQLList):
            self.kind = LIST
            self.item = Completion(inner.of_type, nodes, plans)
        elif is_leaf_type(inner):
            self.kind = LEAF
            self.coerce = inner.coerce_output_value
            self.passthrough = _PASSTHROUGH.get(inner.name)
            if getattr(inner, "serialize", None) is isoformat:
                self.iso_type = _ISO_TYPES.get(inner.name)
            if is_enum_type(inner):
                self.coerce = _memoized(self.coerce)
                self.enum_class = getattr(inner, "wrapped_cls", None)
                if self.enum_class is not None:
                    # By member name: a str hashes in C, an Enum member in Python.
                    self.members = {m._name_: self.coerce(m) for m in self.enum_class}
        elif is_object_type(inner):
            self.kind = OBJECT
            assert isinstance(inner, GraphQLObjectType)
            self.object = plans.object_plan(inner, nodes)
        elif isinstance(inner, GraphQLUnionType) and inner.resolve_type is not None:
            # Strawberry gives every union a `resolve_type` (graphql-core's default resolver,
            # which may await `is_type_of`, is left to graphql-core).
            self.kind = ABSTRACT
            self.abstract = inner
            self.schema_types = plans.schema.type_map
            self.possible = {
                member.name: plans.object_plan(member, nodes)
                for member in plans.schema.get_possible_types(inner)
            }
        else:
            assert is_abstract_type(inner)
            raise UnsupportedError(f"a field of abstract type {inner}")


# Scalars whose output coercion returns a value of this exact type unchanged.
_PASSTHROUGH: dict[str, type] = {
    GraphQLString.name: str,
    GraphQLID.name: str,
    GraphQLBoolean.name: bool,
}
# Strawberry's date and time scalars, serialized by `isoformat`.
_ISO_TYPES: dict[str, type] = {"DateTime": dt.datetime, "Date": dt.date, "Time": dt.time}
# Int's output coercion also returns an int unchanged, within 32 bits.
INT_NAME = GraphQLInt.name


def _is_list(type_: GraphQLOutputType) -> bool:
    return isinstance(type_.of_type if isinstance(type_, GraphQLNonNull) else type_, GraphQLList)


def _memoized(coerce: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An enum's output coercion, remembered per member (a member always gives its name)."""
    seen: dict[Any, Any] = {}

    def coerce_member(value: Any) -> Any:
        try:
            return seen[value]
        except KeyError:
            result = seen[value] = coerce(value)
            return result
        except TypeError:  # unhashable: not a member, let coercion say so
            return coerce(value)

    return coerce_member


class FieldPlan:
    """One response key of an object: how its value is got, checked and completed."""

    __slots__ = (
        "args",
        "attribute",
        "by_principal",
        "completion",
        "deferred",
        "definition",
        "field_def",
        "info_name",
        "key",
        "kind",
        "loaded",
        "name",
        "node",
        "nodes",
        "parent_name",
        "permissions",
        "resolver",
        "self_positional",
        "source_names",
        "strawberry",
        "value_rule",
    )

    def __init__(
        self,
        key: str,
        parent: GraphQLObjectType,
        details: list[FieldDetails],
        schema: GraphQLSchema,
        plans: _Compiler,
    ) -> None:
        self.key = key
        self.nodes = [d.node for d in details]
        self.node = self.nodes[0]
        if any(d.fragment_variable_values is not None for d in details):
            raise UnsupportedError("fragment variables")
        self.name = self.node.name.value
        self.parent_name = parent.name
        self.permissions: tuple[BasePermission, ...] = ()
        # Whether its permissions read the principal alone (`by_principal` on each rule): then
        # one check per operation decides it for every object the field is asked of.
        self.by_principal = False
        self.value_rule: ValueRule | None = None
        self.resolver: Callable[..., Any] | None = None
        self.attribute = ""
        self.self_positional = False
        self.info_name: str | None = None
        self.source_names: tuple[str, ...] = ()
        # Converted arguments when they depend on no variable; None when worked out per run.
        self.args: dict[str, Any] | None = {}
        self.definition: StrawberryField | None = None
        self.deferred = False
        # For a field declared by what it loads (`resolvers.common.loaded`): what, by which key.
        self.loaded: Loaded | None = None
        self.strawberry = plans.strawberry
        if self.name == "__typename":
            self.kind = TYPENAME
            self.completion = Completion(GraphQLNonNull(GraphQLString), self.nodes, plans)
            return
        field_def = parent.fields.get(self.name)
        if field_def is None:
            raise UnsupportedError(f"unknown field {parent.name}.{self.name}")
        self.field_def: GraphQLField = field_def
        definition = (field_def.extensions or {}).get(_DEFINITION)
        if not isinstance(definition, StrawberryField) or (
            type(definition).get_result is not StrawberryField.get_result
        ):
            raise UnsupportedError(f"{parent.name}.{self.name} is not a plain Strawberry field")
        self.definition = definition
        metadata: dict[str, Any] = dict(definition.metadata or {})
        if metadata.get("reads_outside_loaders"):
            plans.reads_outside_loaders = True
        self._rules(definition.extensions)
        resolver = definition.base_resolver
        if resolver is None:
            self.kind = ATTRIBUTE
            self.attribute = definition.python_name
        else:
            self.kind = RESOLVER
            function = resolver.wrapped_func
            if isinstance(function, (staticmethod, classmethod)):
                raise UnsupportedError(f"{parent.name}.{self.name} resolves with a {function}")
            self.resolver = function
            self.self_positional = resolver.self_parameter is not None
            self.info_name = resolver.info_parameter.name if resolver.info_parameter else None
            self.source_names = tuple(
                p.name for p in (resolver.root_parameter, resolver.parent_parameter) if p
            )
            self.args = plans.constant_arguments(self)
            self.loaded = metadata.get(LOADED)
            # An async resolver starts when graphql-core would start its task, after the sync
            # pass of its object (`api.engine.run`), so that errors come in graphql-core's order.
            self.deferred = definition.is_async
            if (
                not self.deferred
                and self.self_positional
                and self.info_name is None
                and not self.source_names
                and not definition.arguments
                and not self.permissions
                and self.value_rule is None
                # A list may hold awaitable items, which `Run.complete` awaits.
                and not _is_list(field_def.type)
            ):
                self.kind = DERIVED
        self.completion = Completion(field_def.type, self.nodes, plans)

    def _rules(self, extensions: list[FieldExtension]) -> None:
        if len(extensions) > 1:
            raise UnsupportedError(f"{self.parent_name}.{self.name} has several extensions")
        for extension in extensions:
            if isinstance(extension, PermissionExtension) and not extension.fail_silently:
                self.permissions = tuple(extension.permissions)
                self.by_principal = all(
                    getattr(rule, "by_principal", False) for rule in self.permissions
                )
            elif isinstance(extension, ValueRule):
                self.value_rule = extension
            else:
                raise UnsupportedError(f"the extension {type(extension).__name__}")

    def convert(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The resolver's keyword arguments from graphql-core's coerced argument values."""
        assert self.definition is not None
        converter = self.strawberry.schema_converter
        kwargs = convert_arguments(
            raw,
            self.definition.arguments,
            scalar_registry=converter.scalar_registry,
            config=self.strawberry.config,
        )
        for extension in self.definition.extensions:
            kwargs = extension.map_arguments(kwargs)
        return kwargs


class ObjectPlan:
    """The fields selected on one object type, in response order."""

    __slots__ = ("compiled", "compiled_optimistic", "fields", "is_type_of", "type_", "waits")

    def __init__(self, type_: GraphQLObjectType) -> None:
        self.type_ = type_
        self.is_type_of = type_.is_type_of
        self.fields: tuple[FieldPlan, ...] = ()
        # Worked out by `api.engine.compiled`: whether anything under it waits, and the
        # function completing an object of this plan.
        self.waits: bool | None = None
        self.compiled: Callable[..., dict[str, Any]] | None = None
        self.compiled_optimistic: Callable[..., dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class OperationPlan:
    """A compiled query operation."""

    operation: OperationDefinitionNode
    root: ObjectPlan
    # What compiled it, and goes on compiling the object plans it reaches as it runs.
    compiler: _Compiler

    @property
    def reads_outside_loaders(self) -> bool:
        """Whether a field planned so far reads a store other than through the loaders (its
        answer may change between two runs of one request: `reads_outside_loaders` in the
        field's metadata). Root fields are planned with the operation; others as reached."""
        return self.compiler.reads_outside_loaders


class _Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDetails],
        operation: OperationDefinitionNode,
        strawberry_schema: Any,
    ) -> None:
        self.strawberry = strawberry_schema
        self.schema = schema
        self.reads_outside_loaders = False
        self.fragments = fragments
        self.operation = operation

    def root_plan(self, root: GraphQLObjectType) -> ObjectPlan:
        collected = collect_fields(
            self.schema, self.fragments, _NO_VARIABLES, root, self.operation
        ).grouped_field_set
        if _DELEGATED_ROOT_FIELDS.intersection(d[0].node.name.value for d in collected.values()):
            raise UnsupportedError("introspection or federation entry points")
        return self._fill(ObjectPlan(root), root, collected)

    def object_plan(self, type_: GraphQLObjectType, nodes: list[FieldNode]) -> ObjectPlan:
        details = [FieldDetails(node, None) for node in nodes]
        collected = collect_subfields(
            self.schema, self.fragments, _NO_VARIABLES, self.operation, type_, details
        ).grouped_field_set
        return self._fill(ObjectPlan(type_), type_, collected)

    def _fill(
        self,
        plan: ObjectPlan,
        type_: GraphQLObjectType,
        collected: dict[str, list[FieldDetails]],
    ) -> ObjectPlan:
        plan.fields = tuple(
            FieldPlan(key, type_, details, self.schema, self) for key, details in collected.items()
        )
        return plan

    def constant_arguments(self, field: FieldPlan) -> dict[str, Any] | None:
        """The converted arguments of a field whose arguments name no variable, else None."""
        node = field.node
        if not (field.field_def.args or node.arguments):
            return {}
        if _names_variable(node):
            return None
        try:
            raw = get_argument_values(field.field_def, node, _NO_VARIABLES)
            return field.convert(raw)
        except (GraphQLError, TypeError, ValueError):
            return None  # let the run raise it, on the field's path, as graphql-core would


def _names_variable(node: FieldNode) -> bool:
    found = False

    class Finder(Visitor):
        def enter_variable(self, *_: Any) -> None:
            nonlocal found
            found = True

    for argument in node.arguments or ():
        visit(argument, Finder())
    return found


def _uses_directives(document: DocumentNode) -> bool:
    found = False

    class Finder(Visitor):
        def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
            nonlocal found
            found = True

    visit(document, Finder())
    return found


def compile_operation(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    strawberry_schema: Any,
) -> OperationPlan:
    """The plan of the named (or only) query operation of a validated document.

    Raises UnsupportedError when graphql-core must run it instead: no such operation (its
    error is graphql-core's to word), not a query, or something a plan does not cover.
    """
    if strawberry_schema.schema_converter._exception_handler_specs:
        raise UnsupportedError("Strawberry exception handlers")
    operation: OperationDefinitionNode | None = None
    fragments: dict[str, FragmentDetails] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            if operation_name is None:
                if operation is not None:
                    raise UnsupportedError("several operations and no name")
                operation = definition
            elif definition.name and definition.name.value == operation_name:
                operation = definition
        elif isinstance(definition, FragmentDefinitionNode):
            if definition.variable_definitions:
                raise UnsupportedError("fragment variables")
            fragments[definition.name.value] = FragmentDetails(definition, None)
    if operation is None:
        raise UnsupportedError("no such operation")
    if operation.operation is not OperationType.QUERY:
        raise UnsupportedError(f"a {operation.operation.value}")
    if _uses_directives(document):
        raise UnsupportedError("directives")
    root = schema.query_type
    assert root is not None
    compiler = _Compiler(schema, fragments, operation, strawberry_schema)
    return OperationPlan(operation, compiler.root_plan(root), compiler)
