"""Whether a parsed operation may run for a principal: one set of checks for HTTP and WebSocket.

Checked before anything executes, in this order:
1. `validate`: the schema's rules; in production, roles that may not explore the schema get
   no "Did you mean" suggestions, no introspection and no federation `_service { sdl }`
   (`analyst`, `admin` and `service` do);
2. `admit`: anonymous callers may only ask for `__typename` (and introspect or read
   `_service`, where allowed), else 401 (so `_entities` needs a credential); depth, aliases
   and cost against the role's budget (`api.limits`), else 400.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    validate,
)
from graphql.validation import NoSchemaIntrospectionCustomRule, ValidationRule, specified_rules
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from api.limits import INTROSPECTION_FIELDS, check_limits
from api.principal import Principal, Role
from api.settings import Environment, Settings

# Federation's `_service { sdl }` tells what introspection does (the subgraph SDL): it is open
# where introspection is, so a gateway or `rover` can fetch it like GraphiQL introspects.
SERVICE_FIELD = "_service"
# Roles that may explore the schema (introspection, GraphiQL, suggestions) in production.
EXPLORERS = (Role.ANALYST, Role.ADMIN, Role.SERVICE)
_CACHED_VALIDATIONS = 2048


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an operation may not run: an HTTP status and GraphQL errors for the body."""

    status: int
    errors: list[GraphQLError]


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
        # Validation is the costly step and depends only on the document and two flags.
        self._validated: OrderedDict[tuple[str, bool], list[GraphQLError]] = OrderedDict()
        # graphql-core's rules and Strawberry's own (which its execution would otherwise add).
        rules = (*specified_rules, OneOfInputValidationRule, MaybeNullValidationRule)
        self._rules_open = rules
        self._rules_closed = (*rules, NoSchemaIntrospectionCustomRule, NoServiceSdlRule)

    def validate(
        self, query: str, document: DocumentNode, principal: Principal
    ) -> list[GraphQLError]:
        """Schema validation of `document` (parsed from `query`), cached by its text."""
        explorer = may_explore(self.settings, principal)
        key = (query, explorer)
        errors = self._validated.get(key)
        if errors is None:
            errors = validate(
                self.schema,
                document,
                self._rules_open if explorer else self._rules_closed,
                hide_suggestions=not explorer,
            )
            self._validated[key] = errors
            if len(self._validated) > _CACHED_VALIDATIONS:
                self._validated.popitem(last=False)
        else:
            self._validated.move_to_end(key)
        return errors

    def admit(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        principal: Principal,
        variables: dict[str, Any] | None,
    ) -> Refusal | None:
        """For a valid document: None when the operation may run for `principal`, else why not."""
        if principal.anonymous and not _only_public_fields(operation):
            return Refusal(
                401,
                [
                    GraphQLError(
                        "Authentication required: send `Authorization: Bearer <token>` or "
                        "`X-API-Key`. Anonymous requests may only ask for `__typename`.",
                        extensions={"code": "UNAUTHENTICATED"},
                    )
                ],
            )
        limit_errors = check_limits(
            self.schema,
            document,
            variables=variables,
            max_depth=self.settings.limit_depth,
            max_aliases=self.settings.limit_aliases,
            cost_budget=self._budgets[principal.role],
            role=principal.role,
            page_default=self.settings.page_default,
        )
        return Refusal(400, limit_errors) if limit_errors else None


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


def _only_public_fields(operation: OperationDefinitionNode) -> bool:
    """Whether the operation's root selects only `__typename`, introspection and `_service`."""
    public = INTROSPECTION_FIELDS | {SERVICE_FIELD, "__typename"}
    return all(
        isinstance(selection, FieldNode) and selection.name.value in public
        for selection in operation.selection_set.selections
    )
