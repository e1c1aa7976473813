"""Authentication: the principal behind a request's credentials, for HTTP and WebSocket alike.

A credential is an API key (`X-API-Key: <key>`, or `Authorization: Bearer <key>` since keys
are recognisable by their `c360_` prefix) or a JWT (`Authorization: Bearer <token>`). No
credential means the anonymous principal; a credential that does not hold is refused, never
downgraded to anonymous, so a client learns at once that its token is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from api.keys import KEY_PREFIX, KeyVerifier
from api.settings import Settings
from api.tokens import TokenVerifier
from domain.principal import ANONYMOUS, AuthenticationError, Principal


def jwt_configured(settings: Settings) -> bool:
    """Whether any JWT verification is set up (a secret or a JWKS)."""
    return bool(
        settings.auth_jwt_secret or settings.auth_jwt_jwks_url or settings.auth_jwt_jwks_file
    )


class Authenticator:
    """Turns credentials into a principal: API keys from SQL, JWTs by signature."""

    def __init__(self, settings: Settings, engine: AsyncEngine, http: httpx.AsyncClient) -> None:
        self.keys = KeyVerifier(engine, settings.auth_key_cache_seconds)
        self.tokens = TokenVerifier(settings, http) if jwt_configured(settings) else None

    async def from_headers(self, headers: Mapping[str, str]) -> Principal:
        """The principal of an HTTP request (or a WebSocket handshake)."""
        return await self._authenticate(headers.get("authorization"), headers.get("x-api-key"))

    async def from_connection_params(self, params: Mapping[str, Any] | None) -> Principal:
        """The principal of a WebSocket's `connection_init` payload.

        Accepted: `{"authorization": "Bearer <token or key>"}` (any case), `{"apiKey": key}`
        or `{"token": jwt}`.
        """
        lowered = {str(k).lower(): v for k, v in (params or {}).items()}
        authorization = lowered.get("authorization")
        if authorization is None and lowered.get("token") is not None:
            authorization = f"Bearer {lowered['token']}"
        api_key = lowered.get("apikey", lowered.get("x-api-key"))
        if not isinstance(authorization, str | None) or not isinstance(api_key, str | None):
            raise AuthenticationError("Credentials in connection_init must be strings.")
        return await self._authenticate(authorization, api_key)

    async def _authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        if authorization is not None and api_key is not None:
            raise AuthenticationError("Send one credential: Authorization or X-API-Key, not both.")
        if api_key is not None:
            return await self.keys.verify(api_key.strip())
        if authorization is None:
            return ANONYMOUS
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthenticationError("Use `Authorization: Bearer <token or API key>`.")
        if credential.startswith(KEY_PREFIX):
            return await self.keys.verify(credential)
        if self.tokens is None:
            raise AuthenticationError("This server accepts API keys only; no JWT is configured.")
        return await self.tokens.verify(credential)
