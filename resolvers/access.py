"""Who may see and change what: rules declared on the schema's fields, applied after the cache.

Loaders return whole entities, the same for every caller; these field extensions decide, per
field and per principal, whether a value is returned in clear, masked, or refused. Because they
run on the resolved value, a cached entity is never served with another principal's view.

- `readable(scope)`: who may read a field that opens an area of data (the customer, orders,
  profile, ...). Every human role may; a `service` key only with the area's scope.
- `own_customer(...)`: a `customer` principal may only reach its own customer.
- `staff_lookup(scope)`: lookups of many customers at once, for staff and `service` keys with
  `scope`, never for the `customer` role. `check_readable`, `check_entity` and `refusals` apply
  the same rules to federation `_entities` representations, which no field extension guards.
- `changeable(...)`: who may run a mutation; a `customer` only its own contact and consent.
- `Pii(mask)`: personal data. In clear for `agent`, `admin`, the customer itself and a `service`
  with `pii:read`, and then recorded in the audit log; masked for `analyst`; refused otherwise.
- `MarketingData()`: hidden from everyone but `admin` when marketing consent is withdrawn.

A refused field is null with a `FORBIDDEN` error on its path, so every guarded field is
nullable: the rest of the query still answers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension

from domain.principal import Principal, Role, Scope
from resolvers.masking import Mask

CustomerArgument = Callable[[dict[str, Any]], object]

# Roles that see every customer's personal data in clear.
_CLEAR = (Role.ADMIN, Role.AGENT)


def reads_pii_in_clear(principal: Principal) -> bool:
    """Whether `principal` reads every customer's personal data in clear (`agent`, `admin`,
    a `service` with `pii:read`); a customer reads only its own."""
    return principal.has(*_CLEAR) or principal.may(Scope.PII)


def forbidden(message: str) -> GraphQLError:
    """The error of a refused field: FORBIDDEN, with a message that says what is missing."""
    return GraphQLError(message, extensions={"code": "FORBIDDEN"})


def _principal(info: Any) -> Principal:
    principal: Principal = info.context.principal
    return principal


class _Rule(BasePermission):
    # Whether the rule reads nothing but the principal (not the object, not the arguments):
    # c360's engine then checks it once per operation, not once per object it is asked of.
    by_principal = False

    def on_unauthorized(self) -> None:
        raise forbidden(self.message or "Not allowed.")


class _Readable(_Rule):
    by_principal = True

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.message = f"Not allowed: reading this needs the `{scope.value}` scope."

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        principal = _principal(info)
        return principal.has(Role.AGENT, Role.ANALYST, Role.CUSTOMER) or principal.may(self.scope)


class _OwnCustomer(_Rule):
    message = "Not allowed: a customer may only see its own record."

    def __init__(self, customer_of: CustomerArgument) -> None:
        self.customer_of = customer_of

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        principal = _principal(info)
        if not principal.is_customer:
            return True
        return str(self.customer_of(kwargs)) == str(principal.customer_id)


class _Changeable(_Rule):
    def __init__(self, customer_of: CustomerArgument | None) -> None:
        self.customer_of = customer_of
        self.message = "Not allowed: this change needs the agent or admin role" + (
            ", or a customer changing its own record." if customer_of else "."
        )

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        principal = _principal(info)
        if principal.has(Role.ADMIN, Role.AGENT):
            return True
        if self.customer_of is None or Role.CUSTOMER not in principal.roles:
            return False
        return str(self.customer_of(kwargs)) == str(principal.customer_id)


class _StaffLookup(_Rule):
    by_principal = True

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.message = (
            "Not allowed: lookups of many customers are for staff (agent, analyst, admin) and "
            f"for services with the `{scope.value}` scope."
        )

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        principal = _principal(info)
        return principal.has(Role.AGENT, Role.ANALYST) or principal.may(self.scope)


class _Admin(_Rule):
    message = "Not allowed: this needs the admin role."
    by_principal = True

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return Role.ADMIN in _principal(info).roles


def _guard(*rules: BasePermission) -> PermissionExtension:
    return PermissionExtension(list(rules), use_directives=False)


def readable(scope: Scope) -> PermissionExtension:
    """A field any human role may read, and a `service` key holding `scope`."""
    return _guard(_Readable(scope))


def own_customer(scope: Scope, customer_of: CustomerArgument) -> PermissionExtension:
    """An entry point to one customer: readable, and a `customer` only reaches its own."""
    return _guard(_Readable(scope), _OwnCustomer(customer_of))


def changeable(customer_of: CustomerArgument | None = None) -> PermissionExtension:
    """A mutation for `agent` and `admin`; with `customer_of`, also the customer's own change."""
    return _guard(_Changeable(customer_of))


def staff_lookup(scope: Scope) -> PermissionExtension:
    """A lookup of many customers at once: staff and `service` keys holding `scope`, never the
    `customer` role (it has one customer to see)."""
    return _guard(_StaffLookup(scope))


# One rule per scope for the checks below, made once: `_entities` checks each representation.
_READABLE = {scope: _Readable(scope) for scope in Scope}


def check_readable(info: Any, scope: Scope) -> None:
    """Raise FORBIDDEN unless the principal may read data of `scope` (`readable`'s rule), for
    what no field extension guards: a federation `_entities` representation."""
    _check(info, _READABLE[scope])


def refusals(info: Any, scope: Scope, count: int) -> list[GraphQLError]:
    """For `count` federation representations of `scope`: none when the principal may read
    it (`check_readable`), else a FORBIDDEN error for each, each to be located at its index."""
    rule = _READABLE[scope]
    if rule.has_permission(None, info):
        return []
    return [forbidden(rule.message or "Not allowed.") for _ in range(count)]


def check_entity(info: Any, scope: Scope, customer_id: object) -> None:
    """Raise FORBIDDEN unless the principal may read an entity of `scope` belonging to
    `customer_id` (`own_customer`'s rules), for a federation `_entities` representation."""
    _check(info, _READABLE[scope])
    principal = _principal(info)
    if principal.is_customer and str(customer_id) != str(principal.customer_id):
        raise forbidden(_OwnCustomer.message)


def _check(info: Any, *rules: _Rule) -> None:
    for rule in rules:
        if not rule.has_permission(None, info):
            raise forbidden(rule.message or "Not allowed.")


def admin_only() -> PermissionExtension:
    """A field only `admin` may use (the audit log)."""
    return _guard(_Admin())


class ValueRule(FieldExtension):
    """A rule applied to a field's resolved value, for sync and async resolvers alike."""

    def apply_to(self, value: Any, source: Any, info: Any) -> Any:
        raise NotImplementedError

    def resolve(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        return self.apply_to(next_(source, info, **kwargs), source, info)

    async def resolve_async(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        value = next_(source, info, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        return self.apply_to(value, source, info)


class Pii(ValueRule):
    """Personal data: in clear (and audited), masked, or refused, by role.

    The field's source must carry the customer it belongs to as `customer_id`.
    """

    def __init__(self, mask: Mask) -> None:
        super().__init__()
        self.mask = mask

    def apply_to(self, value: Any, source: Any, info: Any) -> Any:
        principal = _principal(info)
        # A customer reads its own data in clear, and only its own: the entry points keep it
        # to its record, and this holds even where one leads elsewhere (a merge's survivor).
        own = principal.is_customer and source.customer_id == principal.customer_id
        if own or reads_pii_in_clear(principal):
            if value is not None:
                info.context.audit_read(source.customer_id, info.path.typename, info.field_name)
            return value
        if Role.ANALYST in principal.roles:
            return None if value is None else self.mask(value)
        raise forbidden("Not allowed: personal data needs the `pii:read` scope.")


class MarketingData(ValueRule):
    """Traits and segments kept only while the customer allows marketing (but for `admin`).

    The field's source must carry `marketing_allowed`, and `without_marketing(field, value)`
    for what the field shows otherwise.
    """

    def apply_to(self, value: Any, source: Any, info: Any) -> Any:
        if source.marketing_allowed or Role.ADMIN in _principal(info).roles:
            return value
        return source.without_marketing(info.field_name, value)
