"""Idempotency keys of mutations, kept in SQL so every instance shares them.

A request with a key claims it before it runs (one row per principal and key); the change it
makes marks the row applied in the change's own transaction (`mark_applied`); its answer is
stored when it is known (`finish`), or the claim is let go when nothing was changed
(`release`), so that a retry runs again. A retry of a finished key gets the stored answer; one
of a key still in flight is told so; one with another request under the key is refused.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sources.sql import models
from sources.sql.engine import begin_write

_TABLE = models.table(models.IdempotencyKey)

# The refusals, with the HTTP status each is answered with.
KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
ALREADY_APPLIED = "ALREADY_APPLIED"
STATUSES = {KEY_REUSED: 422, KEY_IN_USE: 409, ALREADY_APPLIED: 409}
# Expired keys each claim deletes at most: the table stays as small as the window makes it.
EXPIRED_PER_CLAIM = 100


class IdempotencyConflictError(Exception):
    """A request its Idempotency-Key does not let run; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def reused() -> IdempotencyConflictError:
    return IdempotencyConflictError(
        KEY_REUSED,
        "this Idempotency-Key was used with another request: use a new key for a new change",
    )


def in_use() -> IdempotencyConflictError:
    return IdempotencyConflictError(
        KEY_IN_USE,
        "a request with this Idempotency-Key is still running: retry it shortly for its answer",
    )


def already_applied() -> IdempotencyConflictError:
    return IdempotencyConflictError(
        ALREADY_APPLIED,
        "the change of this Idempotency-Key was made, but its answer was not kept: read the "
        "current state rather than retrying",
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """A running request's hold on its key."""

    principal: str
    key: str
    token: str
    expires_at: dt.datetime

    @property
    def marker(self) -> str:
        """The key's id in stores other than SQL (a MongoDB change's marker document)."""
        return f"{self.principal}\n{self.key}"


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored answer of a key's first request."""

    status: int
    body: bytes


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _where(principal: str, key: str) -> Any:
    return (_TABLE.c.principal == principal) & (_TABLE.c.key == key)


async def claim(
    *,
    engine: AsyncEngine,
    principal: str,
    key: str,
    request_hash: str,
    ttl: dt.timedelta,
    lease: dt.timedelta,
) -> Claim | Replay:
    """Hold `key` for a request about to run, or give its first answer; a key that may not run
    now raises IdempotencyConflictError.

    A claim older than `lease` belongs to a request that died without answering: when its
    change did not commit, this request takes the key over.
    """
    for _ in range(3):
        now = _now()
        token = uuid.uuid4().hex
        try:
            async with begin_write(engine) as connection:
                await _forget_expired(connection, now)
                row = (
                    await connection.execute(
                        select(_TABLE).where(_where(principal, key)).with_for_update()
                    )
                ).first()
                if row is not None and row.expires_at < now:
                    # Past its window: forgotten, whatever the sweep above reached.
                    await connection.execute(delete(_TABLE).where(_where(principal, key)))
                    row = None
                if row is None:
                    await connection.execute(
                        insert(_TABLE).values(
                            principal=principal,
                            key=key,
                            request_hash=request_hash,
                            token=token,
                            claimed_at=now,
                            expires_at=now + ttl,
                        )
                    )
                    return Claim(principal, key, token, now + ttl)
                if row.request_hash != request_hash:
                    raise reused()
                if row.response is not None:
                    return Replay(int(row.status), bytes(row.response))
                if row.applied_at is not None and (
                    row.token is None or row.claimed_at + lease < now
                ):
                    raise already_applied()
                if row.token is not None and row.claimed_at + lease >= now:
                    raise in_use()
                # Let go, or left by a request that died, and nothing committed: run again.
                await connection.execute(
                    update(_TABLE).where(_where(principal, key)).values(token=token, claimed_at=now)
                )
                return Claim(principal, key, token, row.expires_at)
        except IntegrityError:
            continue  # another request inserted the key first: read what it holds
    raise in_use()


async def _forget_expired(connection: AsyncConnection, now: dt.datetime) -> None:
    """Expired keys go as new ones are claimed, a few at a time: none is held by anyone (the
    rows other claims are deleting are skipped, so two claims never wait on each other)."""
    expired = (
        select(_TABLE.c.principal, _TABLE.c.key)
        .where(_TABLE.c.expires_at < now)
        .limit(EXPIRED_PER_CLAIM)
        .with_for_update(skip_locked=True)
    )
    await connection.execute(
        delete(_TABLE).where(tuple_(_TABLE.c.principal, _TABLE.c.key).in_(expired))
    )


async def mark_applied(*, connection: AsyncConnection, claim: Claim) -> None:
    """Record, in the change's own transaction, that the key's change is made; a request that
    lost its claim (it ran past its lease and another took the key) changes nothing."""
    marked = await connection.execute(
        update(_TABLE)
        .where(_where(claim.principal, claim.key), _TABLE.c.token == claim.token)
        .values(applied_at=_now())
    )
    if marked.rowcount != 1:
        raise in_use()


async def applied(*, engine: AsyncEngine, claim: Claim) -> None:
    """Mark the key applied after a change committed in another store (MongoDB), whose own
    marker is the guard; this lets a retry know without asking that store."""
    async with begin_write(engine) as connection:
        await connection.execute(
            update(_TABLE)
            .where(_where(claim.principal, claim.key), _TABLE.c.token == claim.token)
            .values(applied_at=_now())
        )


async def finish(*, engine: AsyncEngine, claim: Claim, status: int, body: bytes) -> None:
    """Keep the request's answer for its retries."""
    async with begin_write(engine) as connection:
        await connection.execute(
            update(_TABLE)
            .where(_where(claim.principal, claim.key), _TABLE.c.token == claim.token)
            .values(token=None, status=status, response=body)
        )


async def release(*, engine: AsyncEngine, claim: Claim) -> bool:
    """Let the key go after a request that answered with an error: removed when its change did
    not commit (a retry runs again); True when it did (a retry is told ALREADY_APPLIED)."""
    async with begin_write(engine) as connection:
        removed = await connection.execute(
            delete(_TABLE).where(
                _where(claim.principal, claim.key),
                _TABLE.c.token == claim.token,
                _TABLE.c.applied_at.is_(None),
            )
        )
        if removed.rowcount == 1:
            return False
        await connection.execute(
            update(_TABLE)
            .where(_where(claim.principal, claim.key), _TABLE.c.token == claim.token)
            .values(token=None)
        )
        return True


async def forget(*, engine: AsyncEngine, claim: Claim) -> None:
    """Drop the key after an answer that asks for a retry: the retry runs again (the change
    must then be one a rerun finishes rather than repeats, as a merge is)."""
    async with begin_write(engine) as connection:
        await connection.execute(
            delete(_TABLE).where(_where(claim.principal, claim.key), _TABLE.c.token == claim.token)
        )
