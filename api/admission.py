"""Whether a parsed operation may run for a principal: one set of checks for HTTP and WebSocket.

Checked before anything executes, cheap checks before costly ones, in this order:
0. `screen`, before parsing: an anonymous caller's text over 4 KiB is refused (401);
1. `check`, on the parsed document and the operation chosen:
   - anonymous callers may only send one operation asking for `__typename` (and introspect or
     read `_service`, where allowed), its fragments only on introspection types, else 401 (so
     `_entities` needs a credential, and an anonymous document hides no other work);
   - its shape (`api.limits.check_shape`: selections, depth, aliases), else 400;
   - the schema's rules, the field-merging one stopped at its comparisons budget (else 400);
     in production, roles that may not explore the schema get no "Did you mean" suggestions,
     no introspection and no federation `_service { sdl }` (`analyst`, `admin` and `service`
     do);
2. `admit`, with the variables: no NUL character in a variable or string literal
   (`api.inputs`), else 400; the chosen operation's cost against the role's budget, else 400.

Everything in `check` but the anonymous test depends only on the document's text and whether
the caller may explore, so it is done once per text and remembered: a repeated document pays
a dictionary lookup. So is the cost of an operation declaring no variables, per operation and
role. The token limit comes before all this, at parsing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    validate,
)
from graphql.validation import (
    NoSchemaIntrospectionCustomRule,
    OverlappingFieldsCanBeMergedRule,
    ValidationRule,
    specified_rules,
)
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from api.inputs import nul_error
from api.limits import (
    INTROSPECTION_FIELDS,
    ComparisonsExceededError,
    check_cost,
    check_shape,
    merge_rule,
)
from api.settings import Environment, Settings
from domain.principal import Principal, Role
from resolvers.errors import VALIDATION_FAILED, with_code

# Federation's `_service { sdl }` tells what introspection does (the subgraph SDL): it is open
# where introspection is, so a gateway or `rover` can fetch it like GraphiQL introspects.
SERVICE_FIELD = "_service"
# Roles that may explore the schema (introspection, GraphiQL, suggestions) in production.
EXPLORERS = (Role.ANALYST, Role.ADMIN, Role.SERVICE)
_CACHED_DOCUMENTS = 2048
# Anonymous callers may send `{ __typename }`, `_service { sdl }` and (where allowed)
# introspection, GraphiQL's query being 1.6 KB: a longer text is not worth parsing.
ANONYMOUS_MAX_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an operation may not run: an HTTP status and GraphQL errors for the body.

    `status` is None for a document the schema's rules refuse: a GraphQL request error, whose
    status the transport decides (over HTTP, by the response's media type).
    """

    status: int | None
    errors: list[GraphQLError]


@dataclass(slots=True)
class _Checked:
    """What is known of one document's text, and its validation per view once done."""

    # Why the document is refused whoever sends it (its shape, its comparisons), or None.
    refusal: Refusal | None
    # The field-merging rule's errors, reported with the other rules' ones.
    conflicts: list[GraphQLError]
    validated: dict[bool, Refusal | None] = field(default_factory=dict)
    # The cost refusal (or None) per (operation name, role), for operations without variables.
    costs: dict[tuple[str | None, str], Refusal | None] = field(default_factory=dict)


def may_explore(settings: Settings, principal: Principal) -> bool:
    """Introspection, GraphiQL and suggestions: anyone in development, explorers in production."""
    return settings.env is Environment.DEVELOPMENT or principal.has(*EXPLORERS)


class Admission:
    """The pre-execution checks of one schema under one set of settings."""

    def __init__(self, schema: GraphQLSchema, settings: Settings) -> None:
        self.schema = schema
        self.settings = settings
        self._budgets = {
            "anonymous": settings.limit_cost_anonymous,
            Role.CUSTOMER.value: settings.limit_cost_customer,
            Role.AGENT.value: settings.limit_cost_agent,
            Role.ANALYST.value: settings.limit_cost_analyst,
            Role.SERVICE.value: settings.limit_cost_service,
            Role.ADMIN.value: settings.limit_cost_admin,
        }
        # Validation is the costly step and depends only on the document and one flag.
        self._checked: OrderedDict[str, _Checked] = OrderedDict()
        # The field-merging rule runs first and alone: its work grows with the square of the
        # fields sharing a name, so it is stopped at a budget before the other rules' walks.
        self._merging = (merge_rule(settings.limit_comparisons),)
        # graphql-core's other rules and Strawberry's own (which its execution would add).
        rules = (
            *(rule for rule in specified_rules if rule is not OverlappingFieldsCanBeMergedRule),
            OneOfInputValidationRule,
            MaybeNullValidationRule,
        )
        self._rules_open = rules
        self._rules_closed = (*rules, NoSchemaIntrospectionCustomRule, NoServiceSdlRule)

    def screen(self, query: str, principal: Principal) -> Refusal | None:
        """Before parsing: an anonymous caller's text longer than any it may send is refused."""
        if principal.anonymous and len(query) > ANONYMOUS_MAX_CHARS:
            return _unauthenticated()
        return None

    def check(
        self,
        query: str,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        principal: Principal,
    ) -> Refusal | None:
        """None when `document` (parsed from `query`) may run for `principal`, else why not."""
        if principal.anonymous and not _anonymous_may_send(document, operation):
            return _unauthenticated()
        checked = self._checked.get(query)
        if checked is None:
            checked = self._first_look(document)
            self._checked[query] = checked
            if len(self._checked) > _CACHED_DOCUMENTS:
                self._checked.popitem(last=False)
        else:
            self._checked.move_to_end(query)
        if checked.refusal is not None:
            return checked.refusal
        explorer = may_explore(self.settings, principal)
        if explorer not in checked.validated:
            checked.validated[explorer] = self._validate(document, explorer, checked.conflicts)
        return checked.validated[explorer]

    def admit(
        self,
        query: str,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        principal: Principal,
        variables: dict[str, Any] | None,
    ) -> Refusal | None:
        """For a checked `operation` of `document` (parsed from `query`): None when its strings
        hold no NUL and it is within the role's cost budget, else why not."""
        nul = nul_error(document, variables)
        if nul is not None:
            return Refusal(400, [nul])
        # A price that read no variable (no `first: $n`, no list sized by a variable) depends
        # only on the text, the operation and the role: it is kept with the checked document.
        checked = self._checked.get(query)
        key = (operation.name.value if operation.name else None, principal.role)
        if checked is not None and key in checked.costs:
            return checked.costs[key]
        priced = check_cost(
            self.schema,
            document,
            operation,
            variables=variables,
            budget=self._budgets[principal.role],
            role=principal.role,
            page_default=self.settings.page_default,
        )
        refusal = None if priced.error is None else Refusal(400, [priced.error])
        if checked is not None and not priced.reads_variables:
            checked.costs[key] = refusal
        return refusal

    def _first_look(self, document: DocumentNode) -> _Checked:
        """The checks whose work is bounded by limits, cheapest first."""
        shape = check_shape(
            document,
            max_selections=self.settings.limit_selections,
            max_depth=self.settings.limit_depth,
            max_aliases=self.settings.limit_aliases,
        )
        if shape:
            return _Checked(Refusal(400, shape), [])
        try:
            conflicts = validate(self.schema, document, self._merging)
        except ComparisonsExceededError as exceeded:
            return _Checked(Refusal(400, [exceeded.as_graphql_error()]), [])
        return _Checked(None, conflicts)

    def _validate(
        self, document: DocumentNode, explorer: bool, conflicts: list[GraphQLError]
    ) -> Refusal | None:
        errors = conflicts + validate(
            self.schema,
            document,
            self._rules_open if explorer else self._rules_closed,
            hide_suggestions=not explorer,
        )
        return Refusal(None, [with_code(e, VALIDATION_FAILED) for e in errors]) if errors else None


class NoServiceSdlRule(ValidationRule):
    """Refuses federation's `_service` where introspection is refused."""

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        if node.name.value == SERVICE_FIELD and self.context.get_parent_type() is (
            self.context.schema.query_type
        ):
            self.report_error(
                GraphQLError(
                    "The subgraph SDL (`_service`) is not allowed here, as introspection is "
                    "not: it is for the analyst, admin and service roles.",
                    node,
                )
            )


def _unauthenticated() -> Refusal:
    return Refusal(
        401,
        [
            GraphQLError(
                "Authentication required: send `Authorization: Bearer <token>` or `X-API-Key`. "
                "Anonymous requests may only ask for `__typename`.",
                extensions={"code": "UNAUTHENTICATED"},
            )
        ],
    )


def _anonymous_may_send(document: DocumentNode, operation: OperationDefinitionNode) -> bool:
    """Whether the document is the one operation to run, its root selecting only `__typename`,
    introspection and `_service`, and its fragments only introspection's (GraphiQL's query).

    Checked before validation, whose rules walk each fragment once per operation spreading it:
    other operations and fragments are where a short document hides long work.
    """
    public = INTROSPECTION_FIELDS | {SERVICE_FIELD, "__typename"}
    return all(
        definition is operation
        or (
            isinstance(definition, FragmentDefinitionNode)
            and definition.type_condition.name.value.startswith("__")
        )
        for definition in document.definitions
    ) and all(
        isinstance(selection, FieldNode) and selection.name.value in public
        for selection in operation.selection_set.selections
    )
