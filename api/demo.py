"""Ready-made tokens for trying each role in GraphiQL (development secret only)."""

from __future__ import annotations

import datetime as dt
from typing import TextIO

from api.settings import DEVELOPMENT_JWT_SECRET, Environment, Settings
from api.tokens import mint_token
from domain.principal import Role, Scope

# A seeded customer (the demo data's ids start at 1) for the `customer` role.
DEMO_CUSTOMER = "1"


def demo_tokens(settings: Settings) -> dict[str, str]:
    """One 12-hour token per role, or none unless the development secret is in force."""
    secret = settings.auth_jwt_secret
    if (
        settings.env is not Environment.DEVELOPMENT
        or secret is None
        or secret.get_secret_value() != DEVELOPMENT_JWT_SECRET
    ):
        return {}
    subjects = {Role.CUSTOMER: DEMO_CUSTOMER}
    return {
        role.value: mint_token(
            settings,
            subject=subjects.get(role, f"demo-{role.value}"),
            roles=[role],
            scopes=[s.value for s in Scope] if role is Role.SERVICE else (),
            lifetime=dt.timedelta(hours=12),
        )
        for role in Role
    }


def print_demo_tokens(settings: Settings, out: TextIO) -> None:
    """Print the demo tokens with how to use them in GraphiQL."""
    tokens = demo_tokens(settings)
    if not tokens:
        return
    print(
        "\nDemo tokens (12 h, development secret). In GraphiQL, open Headers and paste:", file=out
    )
    print('  {"Authorization": "Bearer <token>"}', file=out)
    for role, token in tokens.items():
        note = f" (customer {DEMO_CUSTOMER})" if role == Role.CUSTOMER.value else ""
        print(f"  {role}{note}: {token}", file=out)
    print(file=out)
