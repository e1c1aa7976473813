"""Everything that stands between a request and the graph, opened once per process."""

from __future__ import annotations

import contextlib
import itertools
import re
import uuid
from collections.abc import AsyncIterator
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

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True, slots=True)
class Guard:
    """Authentication, rate limits, persisted and trusted documents, pre-execution checks."""

    settings: Settings
    authenticator: Authenticator
    limiter: RateLimiter
    persisted: PersistedQueries
    trusted: TrustedDocuments
    admission: Admission


@contextlib.asynccontextmanager
async def open_guard(
    settings: Settings, schema: GraphQLSchema, engine: AsyncEngine
) -> AsyncIterator[Guard]:
    """The guard for one process; its clients are closed on exit."""
    # Only the JWKS is fetched with this client: the identity provider, not a vendor.
    async with httpx.AsyncClient(timeout=5.0) as http:
        limiter = RateLimiter(settings)
        persisted = PersistedQueries(
            settings.redis_url,
            namespace=settings.cache_namespace,
            ttl=settings.persisted_queries_ttl,
            timeout=settings.redis_timeout,
        )
        try:
            yield Guard(
                settings=settings,
                authenticator=Authenticator(settings, engine, http),
                limiter=limiter,
                persisted=persisted,
                trusted=TrustedDocuments(engine),
                admission=Admission(schema, settings),
            )
        finally:
            await persisted.close()
            await limiter.close()


def request_id(header: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one.

    New ids are this process's random prefix and a counter: unique across instances without
    a uuid4 (and its system call) per request.
    """
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return f"{_PROCESS}-{next(_issued):x}"


_PROCESS = uuid.uuid4().hex[:12]
_issued = itertools.count(1)
