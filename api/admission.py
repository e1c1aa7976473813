"""Whether a parsed operation may run for a principal: one set of checks for HTTP and WebSocket.

Checked before anything executes, in this order:
1. `validate`: the schema's rules; in production, roles that may not explore the schema get
   no "Did you mean" suggestions and no introspection (`analyst`, `admin` and `service` do);
2. `admit`: anonymous callers may only ask for `__typename` (and introspect, where allowed),
   else 401; depth, aliases and cost against the role's budget (`api.limits`), else 400.
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
from graphql.validation import NoSchemaIntrospectionCustomRule, specified_rules

from api.limits import check_limits
from api.principal import Principal, Role
from api.settings import Environment, Settings

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
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
        self._rules_open = tuple(specified_rules)
        self._rules_closed = (*specified_rules, NoSchemaIntrospectionCustomRule)

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


def _only_public_fields(operation: OperationDefinitionNode) -> bool:
    """Whether the operation's root selects only `__typename` and introspection."""
    public = INTROSPECTION_FIELDS | {"__typename"}
    return all(
        isinstance(selection, FieldNode) and selection.name.value in public
        for selection in operation.selection_set.selections
    )
