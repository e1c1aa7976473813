"""Who is asking: the principal a request runs as, with its roles and grants."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    AGENT = "agent"
    ANALYST = "analyst"
    SERVICE = "service"
    CUSTOMER = "customer"
    ADMIN = "admin"


class Scope(StrEnum):
    """What a `service` principal may read; other roles are not limited by scope."""

    CUSTOMERS = "customers:read"
    PII = "pii:read"
    PROFILE = "profile:read"
    ORDERS = "orders:read"
    LOYALTY = "loyalty:read"
    SHIPMENTS = "shipments:read"
    TIMELINE = "timeline:read"
    TICKETS = "tickets:read"
    EVENTS = "events:write"  # publish upstream events to POST /events


class AuthenticationError(Exception):
    """Credentials were sent but do not hold: the message says why, without secrets."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller, or `ANONYMOUS`.

    `name` is what the audit log records: the key's name, or the token's subject.
    `customer_id` is set for the `customer` role: the only customer it may see.
    """

    kind: str  # "anonymous", "api-key" or "jwt"
    name: str
    roles: frozenset[Role] = frozenset()
    scopes: frozenset[str] = frozenset()
    customer_id: int | None = None
    expires_at: dt.datetime | None = field(default=None, compare=False)

    @property
    def anonymous(self) -> bool:
        """Whether no credential was sent."""
        return self.kind == "anonymous"

    @property
    def key(self) -> str:
        """What limits count this principal by: its kind and name."""
        return f"{self.kind}:{self.name}"

    @property
    def role(self) -> str:
        """The role recorded for this principal: its most privileged one."""
        for role in (Role.ADMIN, Role.AGENT, Role.ANALYST, Role.SERVICE, Role.CUSTOMER):
            if role in self.roles:
                return role.value
        return "anonymous"

    def has(self, *roles: Role) -> bool:
        """Whether this principal holds any of `roles`."""
        return not self.roles.isdisjoint(roles)

    @property
    def is_customer(self) -> bool:
        """An end customer: it may see and change only its own record."""
        return Role.CUSTOMER in self.roles

    def may(self, scope: Scope) -> bool:
        """Whether this principal holds `scope` as a service (admins hold every scope)."""
        if Role.ADMIN in self.roles:
            return True
        return Role.SERVICE in self.roles and scope.value in self.scopes


ANONYMOUS = Principal(kind="anonymous", name="anonymous")
