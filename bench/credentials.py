"""The bench's own credential: the service checks it like any other, so its cost is measured."""

from __future__ import annotations

from api.settings import Settings
from api.tokens import mint_token
from domain.principal import Principal, Role, Scope

# An agent (every field in clear, so the PII audit path is exercised) that may also publish
# events (the ingest workload).
ROLES = (Role.AGENT, Role.SERVICE)
SCOPES = (Scope.EVENTS.value,)
PRINCIPAL = Principal(kind="jwt", name="bench", roles=frozenset(ROLES), scopes=frozenset(SCOPES))


def bench_authorization(settings: Settings) -> str:
    """`Bearer <token>` for the bench principal, signed with the settings' HS256 secret."""
    token = mint_token(settings, subject=PRINCIPAL.name, roles=ROLES, scopes=SCOPES)
    return f"Bearer {token}"
