"""Service API keys: created and revoked with `c360 keys`, verified on every request.

A key reads `c360_<prefix>_<secret>`: the prefix is the public part a key is found by, the
secret is 32 random bytes. Only the SHA-256 of the whole key is stored, so the database never
holds a usable key. A slow password hash (bcrypt, argon2) would add nothing: it slows the
guessing of low-entropy secrets, and 256 random bits cannot be guessed at any hashing speed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.principal import AuthenticationError, Principal, Role, Scope
from sources.sql.engine import begin_write
from sources.sql.models import ApiKey, table

KEY_PREFIX = "c360_"  # how an API key is told apart from a JWT
NAME_MAX_CHARS = 100
_PREFIX_BYTES = 9  # 12 url-safe characters
_SECRET_BYTES = 32  # 43 url-safe characters
# The prefix may itself hold "_": a key is read by position, not split on "_".
_KEY_PATTERN = re.compile(r"c360_([A-Za-z0-9_-]{12})_[A-Za-z0-9_-]{43}")
# Unknown prefixes are remembered only briefly: a key created on another instance must start
# working soon, and the point is only to spare SQL a client retrying the same wrong key.
_UNKNOWN_SECONDS = 1.0
# Bounds the memory a flood of made-up keys can take; the hot keys are refilled at once.
_MAX_CACHED = 10_000

_api_keys = table(ApiKey)
_E = TypeVar("_E", bound=StrEnum)


class KeyRequestError(ValueError):
    """A key cannot be created as asked: the message says what to change."""


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What may be shown of a key: never the key, nor the hash of it."""

    name: str
    prefix: str
    roles: frozenset[Role]
    scopes: frozenset[str]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


async def create_key(
    *,
    engine: AsyncEngine,
    name: str,
    roles: Collection[Role],
    scopes: Collection[str] = (),
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKeyInfo, str]:
    """Store a new key; returns what is known of it and the key itself, to be shown once."""
    now = dt.datetime.now(dt.UTC)
    if not name.strip() or len(name) > NAME_MAX_CHARS or not name.isprintable():
        raise KeyRequestError(f"a key's name is 1 to {NAME_MAX_CHARS} printable characters")
    if not roles:
        raise KeyRequestError(f"a key needs at least one role: {_choices(Role)}")
    checked_roles = _members(Role, roles, "role")
    if Role.CUSTOMER in checked_roles:
        # A customer is one person with one id, signed in through the identity provider.
        raise KeyRequestError("API keys are for services and staff: customers use tokens")
    checked_scopes = frozenset(scope.value for scope in _members(Scope, scopes, "scope"))
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise KeyRequestError("the expiry needs a time zone (use UTC)")
        if expires_at <= now:
            raise KeyRequestError("the expiry must be in the future")
    prefix = secrets.token_urlsafe(_PREFIX_BYTES)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    info = ApiKeyInfo(
        name=name,
        prefix=prefix,
        roles=checked_roles,
        scopes=checked_scopes,
        created_at=now,
        expires_at=expires_at,
        revoked_at=None,
    )
    try:
        async with begin_write(engine) as connection:
            await connection.execute(
                insert(_api_keys).values(
                    name=name,
                    prefix=prefix,
                    secret_hash=_digest(key),
                    roles=sorted(checked_roles),
                    scopes=sorted(checked_scopes),
                    created_at=now,
                    expires_at=expires_at,
                )
            )
    except IntegrityError as error:
        # The name is the only unique column a caller chooses: 72 random bits of prefix do
        # not collide.
        raise KeyRequestError(f"an API key named {name!r} already exists") from error
    return info, key


async def list_keys(*, engine: AsyncEngine) -> list[ApiKeyInfo]:
    """Every key, revoked and expired ones included, by name."""
    columns = [c for c in _api_keys.c if c.name not in ("id", "secret_hash")]
    async with engine.connect() as connection:
        rows = await connection.execute(select(*columns).order_by(_api_keys.c.name))
        return [_info(row._mapping) for row in rows]


async def revoke_key(*, engine: AsyncEngine, name: str) -> bool:
    """Revoke the key named `name` (again is harmless); False when there is no such key.

    Instances that verified the key recently accept it for up to `auth_key_cache_seconds` more.
    """
    now = literal(dt.datetime.now(dt.UTC), _api_keys.c.revoked_at.type)
    async with begin_write(engine) as connection:
        result = await connection.execute(
            update(_api_keys)
            .where(_api_keys.c.name == name)
            # A second revocation keeps the time of the first.
            .values(revoked_at=func.coalesce(_api_keys.c.revoked_at, now))
        )
    return bool(result.rowcount)


@dataclass(frozen=True, slots=True)
class _Stored:
    secret_hash: str
    principal: Principal
    revoked: bool


@dataclass(frozen=True, slots=True)
class _Cached:
    stored: _Stored | None  # None: no key has this prefix
    until: float  # time.monotonic()


class KeyVerifier:
    """Turns API keys into principals, remembering each key for `cache_seconds`.

    A hot key costs no SQL round trip per request. The price is that a revocation takes up to
    `cache_seconds` to reach an instance that verified the key recently; expiry is checked on
    every call.
    """

    def __init__(self, engine: AsyncEngine, cache_seconds: float) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._loading: dict[str, asyncio.Task[_Stored | None]] = {}

    async def verify(self, key: str) -> Principal:
        """The principal of `key`, or AuthenticationError saying why not (never with the key)."""
        match = _KEY_PATTERN.fullmatch(key)
        if match is None:
            raise AuthenticationError("malformed API key")
        stored = await self._stored(match.group(1))
        # A wrong secret reads as unknown, and only the key's holder learns that it was revoked
        # or has expired: the prefix alone tells nothing.
        if stored is None or not hmac.compare_digest(stored.secret_hash, _digest(key)):
            raise AuthenticationError("unknown API key")
        if stored.revoked:
            raise AuthenticationError("the API key was revoked")
        expires_at = stored.principal.expires_at
        if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
            raise AuthenticationError("the API key has expired")
        return stored.principal

    async def _stored(self, prefix: str) -> _Stored | None:
        cached = self._cache.get(prefix)
        if cached is not None and cached.until > time.monotonic():
            return cached.stored
        # When a hot key's entry runs out, the requests arriving together share one query.
        loading = self._loading.get(prefix)
        if loading is None:
            loading = asyncio.create_task(self._load(prefix))
            self._loading[prefix] = loading
        # A caller that gives up must not cancel the load others are waiting for.
        return await asyncio.shield(loading)

    async def _load(self, prefix: str) -> _Stored | None:
        try:
            async with self._engine.connect() as connection:
                row = (
                    await connection.execute(
                        select(
                            _api_keys.c.name,
                            _api_keys.c.secret_hash,
                            _api_keys.c.roles,
                            _api_keys.c.scopes,
                            _api_keys.c.expires_at,
                            _api_keys.c.revoked_at,
                        ).where(_api_keys.c.prefix == prefix)
                    )
                ).first()
        finally:
            del self._loading[prefix]
        if row is None:
            self._remember(prefix, None, min(self._cache_seconds, _UNKNOWN_SECONDS))
            return None
        stored = _Stored(
            secret_hash=row.secret_hash,
            principal=Principal(
                kind="api-key",
                name=row.name,
                roles=_known(Role, row.roles),
                scopes=frozenset(row.scopes),
                expires_at=row.expires_at,
            ),
            revoked=row.revoked_at is not None,
        )
        self._remember(prefix, stored, self._cache_seconds)
        return stored

    def _remember(self, prefix: str, stored: _Stored | None, seconds: float) -> None:
        self._cache[prefix] = _Cached(stored, time.monotonic() + seconds)
        self._cache.move_to_end(prefix)
        while len(self._cache) > _MAX_CACHED:
            self._cache.popitem(last=False)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _info(row: Any) -> ApiKeyInfo:
    return ApiKeyInfo(
        name=row["name"],
        prefix=row["prefix"],
        roles=_known(Role, row["roles"]),
        scopes=frozenset(row["scopes"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def _members(kind: type[_E], values: Collection[str], what: str) -> frozenset[_E]:
    valid = {member.value: member for member in kind}
    unknown = sorted(set(values) - valid.keys())
    if unknown:
        raise KeyRequestError(f"unknown {what} {', '.join(unknown)}; valid: {_choices(kind)}")
    return frozenset(valid[value] for value in values)


def _known(kind: type[_E], values: list[str]) -> frozenset[_E]:
    # A role or scope stored by another version of c360 and unknown here grants nothing.
    valid = {member.value: member for member in kind}
    return frozenset(valid[value] for value in values if value in valid)


def _choices(kind: type[StrEnum]) -> str:
    return ", ".join(member.value for member in kind)
