"""Query limits checked before execution: tokens, selections, depth, aliases, comparisons and
cost. (Tokens are the parser's: it stops reading past the limit, see `too_many_tokens`.)

Cheap checks come before costly ones. `check_shape` reads only the parsed document (no schema,
no variables), so it runs before validation and its answer can be kept with the document;
`merge_rule` stands in for graphql-core's OverlappingFieldsCanBeMergedRule, whose work grows
with the square of the fields sharing a response name, and stops it at a budget; `check_cost`
needs the schema and the variables, prices only the operation that runs, and comes last.

Every refusal is a `GraphQLError` with `extensions={"code": "QUERY_TOO_COMPLEX", "limit":
"tokens" | "selections" | "depth" | "aliases" | "comparisons" | "cost", "measured": n,
"allowed": m}`: one code for clients to handle, the details for those that want them (a
document nested too deeply to be measured at all has no `measured`; for tokens and
comparisons, `measured` is where the check stopped, not what finishing it would have taken).

- Selections, per document: every field, inline fragment and fragment spread of all its
  operations, with fragments expanded at each use site (each fragment is counted once and
  multiplied, so a fragment spread a billion times is measured in no time and refused). The
  whole document, because validation's rules walk it whole: 350 operations each spreading a
  chain of 120 fragments is 42,000 selections, and that much walking.
- Depth, per operation: the most fields on one path from the root to a leaf, through fragment
  spreads and inline fragments; `{ customer { id } }` is 2 deep.
- Aliases, per document: every aliased field, fragments included, each counted once however
  often its fragment is spread.
- Cost, of the operation that runs, with fragments expanded at each use site:
  - a scalar or enum field (and `__typename`) costs 0;
  - a composite field (object, interface, union, or a list of them) costs
    1 + multiplier * (the cost of its selection);
  - the multiplier is the field's `first` argument when it has one (the literal, else the
    variable's value, else the argument's default, else `page_default` for `null`);
    otherwise, for a list field, the length of the list argument named by the Strawberry
    field's `metadata={"list_size_arg": "ids"}` when it is given, else the size hint
    `metadata={"list_size": N}`, else 1 (a list without a hint is priced like one item);
  - inline fragments on different types of an interface or union are all added up (an upper
    bound: an item is only ever one of them).
- Comparisons, per document: graphql-core's own measure of the work of checking that fields
  with one response name can be merged (2 per pair of fields compared, 1 per response name
  matched between two selections); a document selecting a field once spends none.
- Fields under `__schema` and `__type` do not count toward depth or cost, so GraphiQL's
  introspection query passes even the anonymous budget (they do count as selections).

Over 400 lines: every admission limit on a document (tokens, shape, overlapping fields, cost)
shares one walk of the document and one table of costs; they are checked in one place so that
their order (cheap first) stays visible."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLCompositeType,
    GraphQLError,
    GraphQLField,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
    Undefined,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_composite_type,
    is_list_type,
    value_from_ast_untyped,
)
from graphql.validation import OverlappingFieldsCanBeMergedRule, ValidationContext, ValidationRule
from graphql.validation.validate import ValidationAbortedError

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
# Where Strawberry keeps its own field definition on the graphql-core field.
_STRAWBERRY_DEFINITION = "strawberry-definition"

FragmentLookup = Callable[[str], FragmentDefinitionNode | None]


def check_shape(
    document: DocumentNode, *, max_selections: int | None, max_depth: int, max_aliases: int
) -> list[GraphQLError]:
    """The selection, depth and alias errors of a parsed `document`, valid or not.

    It reads the syntax alone, in time linear in the document's size (a fragment is measured
    once however often it is spread), so it can come before validation.
    """
    # Not validation rules: run through `validate`, this measuring would also pay for its
    # generic walk of every node with type tracking, 5-7 times the measuring itself (0.7 ms
    # instead of 0.1 ms for the agent query), which none of it needs.
    shapes = _Shape(_fragments(document).get)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    found: list[GraphQLError | None] = []
    selections = 0
    try:
        for operation in operations:
            depth, selected = shapes.of(operation.selection_set)
            selections += selected
            found.append(_depth_error(operation, depth, max_depth))
    except RecursionError:
        # A chain of fragments each spreading the next; the spec rules would refuse it too.
        return [_unmeasurable("depth", max_depth)]
    if max_selections is not None and operations:
        # The whole document, not each operation: validation walks every fragment once per
        # operation spreading it, so many operations sharing a fragment chain multiply its work.
        found.insert(0, _selections_error(operations, selections, max_selections))
    found.append(_alias_error(document, max_aliases))
    return [error for error in found if error is not None]


@dataclass(frozen=True, slots=True)
class CostCheck:
    """The cost error of an operation (None when within budget), and whether the price read
    any variable: when not, it holds for every request of that document, operation and role."""

    error: GraphQLError | None
    reads_variables: bool


def check_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    *,
    variables: dict[str, Any] | None,
    budget: int,
    role: str,
    page_default: int,
) -> CostCheck:
    """The cost check of the `operation` to run, from a `document` whose shape and validation
    passed (the document's other operations are not priced: they do not run)."""
    root = schema.get_root_type(operation.operation)
    if root is None:
        return CostCheck(None, reads_variables=False)
    costs = _Cost(schema, _fragments(document).get, operation, variables or {}, page_default)
    try:
        cost = costs.of(operation.selection_set, root)
    except RecursionError:
        # Pricing takes more frames per level than measuring the shape does.
        return CostCheck(_unmeasurable("cost", budget), reads_variables=False)
    return CostCheck(_cost_error(operation, cost, budget, role), costs.reads_variables)


class ComparisonsExceededError(Exception):
    """Checking that same-named fields can be merged went past its budget."""

    def __init__(self, spent: int, budget: int) -> None:
        super().__init__(f"{spent} comparisons, over {budget}")
        self.spent = spent
        self.budget = budget

    def as_graphql_error(self) -> GraphQLError:
        """The refusal a client gets: QUERY_TOO_COMPLEX with the `comparisons` limit."""
        return GraphQLError(
            f"Checking that same-named fields can be merged took over {self.budget:,} "
            "comparisons: select each field once, or merge the selections that repeat it.",
            extensions={
                "code": QUERY_TOO_COMPLEX,
                "limit": "comparisons",
                "measured": self.spent,
                "allowed": self.budget,
            },
        )


def merge_rule(budget: int) -> type[ValidationRule]:
    """graphql-core's OverlappingFieldsCanBeMergedRule, stopped past `budget` comparisons.

    Its own budget (500,000) takes seconds to spend (a 17 KB document repeating one field 400
    times held the event loop for 5 s); spent, it raises ComparisonsExceededError out of
    `validate` rather than adding an error, so the caller can refuse with QUERY_TOO_COMPLEX.
    """

    class MergeRule(OverlappingFieldsCanBeMergedRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.rule_context.remaining_complexity_budget = budget

        def enter_selection_set(self, *args: Any) -> None:
            try:
                super().enter_selection_set(*args)
            except ValidationAbortedError:
                remaining = self.rule_context.remaining_complexity_budget
                if remaining >= 0:
                    raise  # validation's own error limit, not this budget
                raise ComparisonsExceededError(budget - remaining, budget) from None

    return MergeRule


def too_many_tokens(allowed: int) -> GraphQLError:
    """The refusal of a document the parser stopped reading at `allowed` tokens: `measured`
    is where it stopped, as for comparisons (reading on to count them all is the work the
    limit is there to spare)."""
    return GraphQLError(
        f"The document has more than {allowed:,} tokens (names, punctuation, values): send a "
        "smaller one.",
        extensions={
            "code": QUERY_TOO_COMPLEX,
            "limit": "tokens",
            "measured": allowed + 1,
            "allowed": allowed,
        },
    )


def _unmeasurable(limit: str, allowed: int) -> GraphQLError:
    return GraphQLError(
        "The document nests fragments too deeply to be measured.",
        extensions={"code": QUERY_TOO_COMPLEX, "limit": limit, "allowed": allowed},
    )


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


def _selections_error(
    operations: list[OperationDefinitionNode], selections: int, max_selections: int
) -> GraphQLError | None:
    if selections <= max_selections:
        return None
    subject = (
        f"The operation selects {selections:,} fields and fragments once its"
        if len(operations) == 1
        else f"The document's {len(operations):,} operations select {selections:,} fields and "
        "fragments once their"
    )
    return _too_complex(
        f"{subject} fragments are spread; at most {max_selections:,} are allowed.",
        operations[0],
        limit="selections",
        measured=selections,
        allowed=max_selections,
    )


def _depth_error(
    operation: OperationDefinitionNode, depth: int, max_depth: int
) -> GraphQLError | None:
    if depth <= max_depth:
        return None
    return _too_complex(
        f"The operation is {depth} levels deep; at most {max_depth} are allowed.",
        operation,
        limit="depth",
        measured=depth,
        allowed=max_depth,
    )


_JSON_SAFE_INTEGER = 2**53 - 1


def _cost_error(
    operation: OperationDefinitionNode, cost: int, budget: int, role: str
) -> GraphQLError | None:
    if cost <= budget:
        return None
    return _too_complex(
        f"The operation costs {cost:,}, over the {role} budget of {budget:,}: "
        "ask for fewer items (`first`) or fewer fields.",
        operation,
        limit="cost",
        # Nested page sizes multiply without bound; orjson refuses integers beyond 64 bits
        # (and JSON readers lose those beyond 2**53), so a larger cost is reported as that.
        measured=min(cost, _JSON_SAFE_INTEGER),
        allowed=budget,
    )


def _alias_error(document: DocumentNode, max_aliases: int) -> GraphQLError | None:
    aliased = _aliased_fields(document)
    if len(aliased) <= max_aliases:
        return None
    return _too_complex(
        f"The document has {len(aliased)} aliases; at most {max_aliases} are allowed.",
        aliased[max_aliases],
        limit="aliases",
        measured=len(aliased),
        allowed=max_aliases,
    )


def _too_complex(
    message: str, node: Node, *, limit: str, measured: int, allowed: int
) -> GraphQLError:
    return GraphQLError(
        message,
        node,
        extensions={
            "code": QUERY_TOO_COMPLEX,
            "limit": limit,
            "measured": measured,
            "allowed": allowed,
        },
    )


def _aliased_fields(document: DocumentNode) -> list[FieldNode]:
    """Every aliased field of the document's definitions, in the order they are written."""
    found: list[FieldNode] = []
    pending: list[SelectionNode] = []
    for definition in reversed(document.definitions):
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            pending.extend(reversed(definition.selection_set.selections))
    while pending:
        selection = pending.pop()
        nested: SelectionSetNode | None = None
        if isinstance(selection, FieldNode):
            if selection.alias is not None:
                found.append(selection)
            nested = selection.selection_set
        elif isinstance(selection, InlineFragmentNode):
            nested = selection.selection_set
        if nested is not None:
            pending.extend(reversed(nested.selections))
    return found


def _selections(
    selection_set: SelectionSetNode,
) -> Iterator[FieldNode | InlineFragmentNode | FragmentSpreadNode]:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode | InlineFragmentNode | FragmentSpreadNode):
            yield selection


class _Shape:
    """Depth and selection count of selection sets, each fragment measured once."""

    def __init__(self, fragments: FragmentLookup) -> None:
        self._lookup = fragments
        self._fragments: dict[str, tuple[int, int]] = {}

    def of(self, selection_set: SelectionSetNode) -> tuple[int, int]:
        """The depth (in fields, introspection left out) and the selections, spreads expanded."""
        deepest = 0
        selections = 0
        for selection in _selections(selection_set):
            selections += 1
            if isinstance(selection, FieldNode):
                nested = selection.selection_set
                depth, inner = self.of(nested) if nested else (0, 0)
                selections += inner
                if selection.name.value in INTROSPECTION_FIELDS:
                    continue
                depth += 1
            elif isinstance(selection, InlineFragmentNode):
                depth, inner = self.of(selection.selection_set)
                selections += inner
            else:
                depth, inner = self._fragment(selection.name.value)
                selections += inner
            deepest = max(deepest, depth)
        return deepest, selections

    def _fragment(self, name: str) -> tuple[int, int]:
        if name not in self._fragments:
            fragment = self._lookup(name)
            self._fragments[name] = (0, 0)  # a cycle (reported by the spec rules) adds nothing
            self._fragments[name] = self.of(fragment.selection_set) if fragment else (0, 0)
        return self._fragments[name]


class _Cost:
    """Costs of selection sets of one operation, each fragment priced once per operation."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: FragmentLookup,
        operation: OperationDefinitionNode,
        variables: dict[str, Any],
        page_default: int,
    ) -> None:
        self._schema = schema
        self._lookup = fragments
        self._variables = variables
        self._defaults = {
            definition.variable.name.value: definition.default_value
            for definition in operation.variable_definitions or ()
            if definition.default_value is not None
        }
        self._page_default = page_default
        self._fragments: dict[str, int] = {}
        self.reads_variables = False

    def of(self, selection_set: SelectionSetNode, parent: GraphQLCompositeType) -> int:
        total = 0
        for selection in _selections(selection_set):
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                narrowed = self._composite(condition.name.value) if condition else parent
                total += self.of(selection.selection_set, narrowed or parent)
            else:
                total += self._fragment(selection.name.value)
        return total

    def _field(self, node: FieldNode, parent: GraphQLCompositeType) -> int:
        name = node.name.value
        if name in INTROSPECTION_FIELDS or node.selection_set is None:
            return 0
        field = self._schema.get_field(parent, name)
        if field is None:
            return 0
        named = get_named_type(field.type)
        if not is_composite_type(named):
            return 0
        inner = self.of(node.selection_set, named)
        return 1 + self._multiplier(node, field) * inner

    def _multiplier(self, node: FieldNode, field: GraphQLField) -> int:
        given = {argument.name.value: argument.value for argument in node.arguments or ()}
        if "first" in field.args:
            first = self._value(given.get("first"))
            if first is Undefined:
                first = field.args["first"].default_value
            count = _as_int(first)
            return self._page_default if count is None else max(count, 0)
        if not is_list_type(get_nullable_type(field.type)):
            return 1
        hints = _hints(field)
        size_arg = hints.get("list_size_arg")
        if isinstance(size_arg, str) and size_arg in field.args:
            items = self._value(given.get(size_arg))
            if items is Undefined:
                items = field.args[size_arg].default_value
            if isinstance(items, list):
                return len(items)
            if items is not None and items is not Undefined:
                return 1  # one value where a list is expected is coerced to a list of one
        size = _as_int(hints.get("list_size"))
        return 1 if size is None else max(size, 0)

    def _value(self, node: ValueNode | None) -> Any:
        """The argument's value: Undefined when it is absent or an unset variable."""
        if node is None:
            return Undefined
        if isinstance(node, VariableNode | ListValueNode | ObjectValueNode):
            self.reads_variables = True  # a list or an object literal may hold variables
        if isinstance(node, VariableNode):
            name = node.name.value
            if name in self._variables:
                return self._variables[name]
            default = self._defaults.get(name)
            return Undefined if default is None else value_from_ast_untyped(default)
        return value_from_ast_untyped(node, self._variables)

    def _fragment(self, name: str) -> int:
        if name not in self._fragments:
            self._fragments[name] = 0  # a cycle (reported by the spec rules) adds nothing
            self._fragments[name] = self._price_fragment(self._lookup(name))
        return self._fragments[name]

    def _price_fragment(self, fragment: FragmentDefinitionNode | None) -> int:
        if fragment is None:
            return 0
        condition = self._composite(fragment.type_condition.name.value)
        return self.of(fragment.selection_set, condition) if condition else 0

    def _composite(self, name: str) -> GraphQLCompositeType | None:
        named = self._schema.get_type(name)
        return named if is_composite_type(named) else None


def _as_int(value: object) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # GraphQL's Int accepts 10.0 from JSON variables
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hints(field: GraphQLField) -> Mapping[str, Any]:
    """The sizing hints in the Strawberry field's `metadata` (empty for other fields)."""
    definition = (field.extensions or {}).get(_STRAWBERRY_DEFINITION)
    metadata = getattr(definition, "metadata", None)
    return metadata if isinstance(metadata, Mapping) else {}
