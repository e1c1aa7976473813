"""Everything that stands between a request and the graph, opened once per process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
from graphql import GraphQLSchema
from sqlalchemy.ext.asyncio import AsyncEngine

from api.admission import Admission
from api.auth import Authenticator
from api.documents import TrustedDocuments
from api.persisted import PersistedQueries
from api.ratelimit import RateLimiter
from api.settings import Settings
from api.subscriptions import PrincipalSubscriptions
from domain.principal import AuthenticationError, Principal


class CallerRefusedError(Exception):
    """A request turned away before anything else: its status, code and response headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers


@dataclass(frozen=True, slots=True)
class Guard:
    """Authentication, rate and subscription limits, persisted and trusted documents,
    pre-execution checks."""

    settings: Settings
    authenticator: Authenticator
    limiter: RateLimiter
    subscriptions: PrincipalSubscriptions
    persisted: PersistedQueries
    trusted: TrustedDocuments
    admission: Admission

    async def identify(
        self, ip: str | None, authenticate: Callable[[], Awaitable[Principal]]
    ) -> Principal:
        """The caller's principal, counted against the rate limits, or CallerRefusedError.

        The address is counted before any credential is looked at, so every guess at a key
        or token spends the guesser's allowance (and a refused one is answered 429, not 401).
        """
        await self._count(principal=None, ip=ip)
        try:
            principal = await authenticate()
        except AuthenticationError as error:
            challenge = f'Bearer error="invalid_token", error_description="{error}"'
            raise CallerRefusedError(
                401, "UNAUTHENTICATED", str(error), {"www-authenticate": challenge}
            ) from None
        if not principal.anonymous:
            await self.count(principal)
        return principal

    async def count(self, principal: Principal) -> None:
        """Count one more operation of `principal` (a batch's, a WebSocket's subscribe)."""
        await self._count(principal=principal.key, ip=None)

    async def _count(self, *, principal: str | None, ip: str | None) -> None:
        decision = await self.limiter.hit(principal=principal, ip=ip)
        if not decision.allowed:
            raise CallerRefusedError(
                429,
                "RATE_LIMITED",
                f"Too many requests from this {decision.limit}; retry in {decision.retry_after} s.",
                {"retry-after": str(decision.retry_after)},
            )


@contextlib.asynccontextmanager
async def open_guard(
    settings: Settings, schema: GraphQLSchema, engine: AsyncEngine
) -> AsyncIterator[Guard]:
    """The guard for one process; its clients are closed on exit."""
    # Only the JWKS is fetched with this client: the identity provider, not a vendor.
    async with httpx.AsyncClient(timeout=5.0) as http:
        limiter = RateLimiter(settings)
        subscriptions = PrincipalSubscriptions(settings)
        subscriptions.start()
        persisted = PersistedQueries(
            settings.redis_url,
            namespace=settings.cache_namespace,
            ttl=settings.persisted_queries_ttl,
            timeout=settings.redis_timeout,
            breaker_seconds=settings.redis_breaker_seconds,
        )
        try:
            yield Guard(
                settings=settings,
                authenticator=Authenticator(settings, engine, http),
                limiter=limiter,
                subscriptions=subscriptions,
                persisted=persisted,
                trusted=TrustedDocuments(engine),
                admission=Admission(schema, settings),
            )
        finally:
            await persisted.close()
            await limiter.close()
            await subscriptions.close()
