"""Production refuses to start when it would run open or with a well-known secret."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import jwt_configured
from api.settings import DEVELOPMENT_JWT_SECRET, Environment, Settings
from sources.sql.models import ApiKey, table

MIN_SECRET_BYTES = 32


class UnsafeConfigurationError(RuntimeError):
    """A production setting that would leave c360 open; the message says which."""


def refuse_unsafe_production(settings: Settings) -> None:
    """Raise when production has the development or a weak JWT secret, or /metrics left open."""
    if settings.env is not Environment.PRODUCTION:
        return
    if settings.auth_jwt_secret is not None:
        _refuse_weak_secret(settings.auth_jwt_secret.get_secret_value())
    if settings.metrics_token is None and not settings.metrics_public:
        raise UnsafeConfigurationError(
            "C360_ENV=production with /metrics open to anyone: set C360_METRICS_TOKEN (scrapers "
            "send it as a bearer token), or C360_METRICS_PUBLIC=true when only your network "
            "reaches /metrics."
        )


def _refuse_weak_secret(secret: str) -> None:
    if secret == DEVELOPMENT_JWT_SECRET:
        raise UnsafeConfigurationError(
            "C360_ENV=production with the development JWT secret: set C360_AUTH_JWT_SECRET to "
            "your own secret, or to an empty value to accept only JWKS-signed tokens."
        )
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise UnsafeConfigurationError(
            f"C360_AUTH_JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes; HS256 needs a long "
            "random secret."
        )


async def refuse_production_without_auth(settings: Settings, engine: AsyncEngine) -> None:
    """Raise when production has no way to authenticate anyone (no JWT, no active API key)."""
    if settings.env is not Environment.PRODUCTION:
        return
    if jwt_configured(settings):
        return
    keys = table(ApiKey)
    now = dt.datetime.now(dt.UTC)
    async with engine.connect() as connection:
        active = await connection.scalar(
            select(func.count())
            .select_from(keys)
            .where(
                keys.c.revoked_at.is_(None),
                or_(keys.c.expires_at.is_(None), keys.c.expires_at > now),
            )
        )
    if not active:
        raise UnsafeConfigurationError(
            "C360_ENV=production with no authentication configured: set C360_AUTH_JWT_JWKS_URL "
            "(or _FILE, or _SECRET), or create an API key with `c360 keys create`."
        )
