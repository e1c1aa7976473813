"""Credentials for tests: development HS256 tokens, as `make run` prints them."""

from __future__ import annotations

from collections.abc import Iterable

from api.settings import Settings
from api.tokens import mint_token
from domain.principal import Role


def token(
    role: Role = Role.AGENT, *, subject: str | None = None, scopes: Iterable[str] = ()
) -> str:
    """A token for one role, signed with the configured (by default the development) secret."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    return mint_token(
        settings, subject=subject or f"test-{role.value}", roles=[role], scopes=scopes
    )


def bearer(
    role: Role = Role.AGENT, *, subject: str | None = None, scopes: Iterable[str] = ()
) -> dict[str, str]:
    """`Authorization` headers for one role."""
    return {"authorization": f"Bearer {token(role, subject=subject, scopes=scopes)}"}


# Most tests act as a contact-center agent: every customer, every field, in clear.
AGENT = bearer(Role.AGENT)
# An upstream system publishing events to POST /events.
PUBLISHER = bearer(Role.SERVICE, subject="test-upstream", scopes=["events:write"])
