"""The Idempotency-Key of a mutation over HTTP: a retry gets the first answer, not a second change.

The key is claimed before the mutation runs and its answer is stored once it has one
(`sources.sql.idempotency`); each change marks the key applied in its own transaction, so
whether the change committed is known even when its answer never reached the client.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import Headers

from api.connections import Connections
from domain.principal import Principal
from sources.errors import SourceError
from sources.loader import outages_as_source_errors
from sources.sql import idempotency
from sources.sql.engine import SQL_ERRORS
from sources.sql.idempotency import Claim, IdempotencyConflictError, Replay

log = logging.getLogger(__name__)

HEADER = "idempotency-key"
REPLAYED = "idempotent-replayed"
MAX_KEY_LENGTH = 255
# A claim outlives the operation's own deadline by this much before another request may take
# the key over (its holder died without answering).
LEASE_MARGIN_SECONDS = 5.0
# How often storing an answer is tried before the key is left held (see `end`).
END_ATTEMPTS = 3


def read_key(headers: Headers) -> str | None:
    """The request's Idempotency-Key, None when absent; ValueError when malformed."""
    key = headers.get(HEADER)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_LENGTH or not all(" " < c <= "~" for c in key):
        raise ValueError(
            f"`Idempotency-Key` must be 1 to {MAX_KEY_LENGTH} printable ASCII characters "
            "(a UUID is a good key)."
        )
    return key


def request_hash(query: str, operation_name: str | None, variables: dict[str, Any] | None) -> str:
    """What makes two requests the same request: the operation and its variables."""
    canonical = orjson.dumps(
        {"query": query, "operationName": operation_name, "variables": variables or {}},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRefusal:
    """The HTTP answer to a request its key does not let run (a conflict, or the key's store
    unreachable): its status, body and headers, sent as they are."""

    status: int
    payload: dict[str, Any]
    headers: dict[str, str]


def _refusal(code: str, message: str, status: int, **extensions: str) -> KeyRefusal:
    headers = {"retry-after": "1"} if status in (409, 503) else {}
    error = {"message": message, "extensions": {"code": code, **extensions}}
    return KeyRefusal(status, {"errors": [error]}, headers)


async def begin(
    connections: Connections, principal: Principal, key: str, digest: str
) -> Claim | Replay | KeyRefusal:
    """Hold the key for this request, or answer it from the key's first request."""
    settings = connections.settings
    try:
        with outages_as_source_errors("sql", "claiming an idempotency key", SQL_ERRORS):
            return await idempotency.claim(
                engine=connections.engine,
                principal=principal.key,
                key=key,
                request_hash=digest,
                ttl=dt.timedelta(seconds=settings.idempotency_ttl_seconds),
                lease=dt.timedelta(seconds=settings.execution_timeout + LEASE_MARGIN_SECONDS),
            )
    except IdempotencyConflictError as error:
        return _refusal(error.code, str(error), idempotency.STATUSES[error.code])
    except SourceError as error:
        # Nothing ran: the client may retry with the same key.
        return _refusal(error.code, str(error), 503, source=error.source)


async def end(
    connections: Connections,
    claim: Claim,
    status: int,
    payload: dict[str, Any],
    *,
    final: bool = True,
) -> None:
    """Store the answer for retries, or let the key go when nothing ran to a result, or when
    the answer is not `final` (it asks for a retry, which must then run again).

    Never raises: the answer is the client's whatever happens to the key (a change that
    committed is not reported as failed because its answer could not be kept).
    """
    data = payload.get("data")
    ran = isinstance(data, dict) and any(value is not None for value in data.values())
    for attempt in range(1, END_ATTEMPTS + 1):
        try:
            if not final:
                await idempotency.forget(engine=connections.engine, claim=claim)
            elif ran:
                await idempotency.finish(
                    engine=connections.engine,
                    claim=claim,
                    status=status,
                    body=orjson.dumps(payload),
                )
            elif await idempotency.release(engine=connections.engine, claim=claim):
                log.warning("mutation under key %r committed but answered with errors", claim.key)
            return
        except SQL_ERRORS as error:
            # A lost connection is discarded by the pool: the next attempt has a fresh one.
            # After the last, the key stays held: a retry is told IDEMPOTENCY_KEY_IN_USE until
            # its lease ends, then ALREADY_APPLIED, or (nothing committed) runs again.
            if attempt == END_ATTEMPTS:
                log.warning("could not keep the answer of idempotency key %r: %r", claim.key, error)
