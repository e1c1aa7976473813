"""JWT bearer tokens: verified into a `Principal`, and minted for the demo and the tests.

HS256 tokens are checked with the configured secret, RS256 and ES256 tokens with the identity
provider's JWKS. The `alg` a token names only chooses which configured key checks it, and each
key is bound to one algorithm: an HS256 token is refused outright when no secret is set, and a
JWKS never supplies an HMAC key, so a public key can never be used as an HMAC secret.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import httpx
import jwt
from jwt.exceptions import InvalidSubjectError

from api.settings import Settings
from domain.principal import AuthenticationError, Principal, Role

log = logging.getLogger(__name__)

_HMAC = "HS256"
_ASYMMETRIC = ("RS256", "ES256")
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
# A kid we do not hold may mean the identity provider rotated its keys, so the JWKS is fetched
# again, but no more often than this: made-up kids must not become a flood of fetches.
_UNKNOWN_KID_REFETCH_SECONDS = 30.0
# With no keys in hand after a failed fetch, requests fail fast for this long, not one fetch each.
_FAILED_FETCH_RETRY_SECONDS = 5.0
_FETCH_TIMEOUT_SECONDS = 5.0
# Customer ids are SQL BIGINTs; the bound also keeps int() away from huge digit strings.
_CUSTOMER_ID = re.compile(r"[0-9]{1,18}")
_ROLES = {role.value: role for role in Role}
_Loader: TypeAlias = Callable[[], Awaitable[object]]  # loads a JWKS document
_KEYS_UNAVAILABLE = "the identity provider's keys could not be fetched"

# The first match wins: InvalidSignatureError is also a DecodeError.
_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidIssuerError, "the token's issuer is not accepted"),
    (jwt.InvalidAudienceError, "the token is meant for another audience"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "unsupported token algorithm"),
    (InvalidSubjectError, "the token's subject is not a string"),
)


# How long, and how many, verified tokens are remembered.
VERIFIED_SECONDS = 60.0
VERIFIED_ENTRIES = 10_000


class TokenVerifier:
    """Turns bearer JWTs into principals; one per app, as it caches the identity provider's keys."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        if settings.auth_jwt_jwks_url and settings.auth_jwt_jwks_file:
            raise ValueError(
                "set C360_AUTH_JWT_JWKS_URL or C360_AUTH_JWT_JWKS_FILE, not both: "
                "which keys would be trusted is otherwise unclear"
            )
        self._settings = settings
        self._jwks: _Jwks | None = None
        url, path = settings.auth_jwt_jwks_url, settings.auth_jwt_jwks_file
        if url is not None:
            self._jwks = _Jwks(_fetcher(url, http), url, settings.auth_jwks_cache_seconds)
        elif path is not None:
            # A file is read once: it changes only with a redeploy, and then so does the process.
            self._jwks = _Jwks(_reader(path), str(path), None)
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """The principal of a bearer JWT, or AuthenticationError saying why (never with it).

        A token that verified is remembered until it expires, for at most VERIFIED_SECONDS
        (so a key withdrawn from the JWKS stops working within that): clients send the same
        token on every request, and checking its signature costs more than a small query.
        """
        now = time.time()
        remembered = self._verified.get(token)
        if remembered is not None:
            until, principal = remembered
            if now < until:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal = await self._verify(token)
        until = now + VERIFIED_SECONDS
        if principal.expires_at is not None:
            until = min(
                until, principal.expires_at.timestamp() + self._settings.auth_jwt_leeway_seconds
            )
        self._verified[token] = (until, principal)
        if len(self._verified) > VERIFIED_ENTRIES:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("malformed token") from None
        key, algorithm = await self._key_for(header)
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.auth_jwt_audience,
                issuer=settings.auth_jwt_issuer,
                leeway=settings.auth_jwt_leeway_seconds,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as error:
            raise AuthenticationError(_refusal(error)) from None
        return _principal(claims, settings)

    async def _key_for(self, header: Mapping[str, Any]) -> tuple[str | jwt.PyJWK, str]:
        """The configured key that checks this token, and the one algorithm it checks."""
        alg = header.get("alg")
        secret = self._settings.auth_jwt_secret
        if alg == _HMAC and secret is not None:
            return secret.get_secret_value(), _HMAC
        if alg in _ASYMMETRIC and self._jwks is not None:
            key = await self._jwks.key(header.get("kid"))
            return key, key.algorithm_name
        raise AuthenticationError("unsupported token algorithm")


class _Jwks:
    """The identity provider's signing keys, loaded lazily and kept for `cache_seconds`.

    When a refresh fails, the keys in hand stay in use (and the failure is logged): a short
    outage of the identity provider should not log everyone out. Only with no keys at all is a
    token refused for it.
    """

    def __init__(self, load: _Loader, source: str, cache_seconds: float | None) -> None:
        self._load = load
        self._source = source
        self._cache_seconds = cache_seconds  # None: loaded once, never fetched again
        self._keys: list[jwt.PyJWK] | None = None
        self._next_fetch_at = 0.0  # time.monotonic()
        self._unknown_kid_fetch_at = 0.0
        self._fetching: asyncio.Task[bool] | None = None

    async def key(self, kid: object) -> jwt.PyJWK:
        """The key a token's `kid` names, or AuthenticationError."""
        if time.monotonic() >= self._next_fetch_at:
            await self._refresh()
        if self._keys is None:
            raise AuthenticationError(_KEYS_UNAVAILABLE)
        key = _find(self._keys, kid)
        if key is None and kid is not None and self._may_refetch_for_unknown_kid():
            if not await self._refresh():
                raise AuthenticationError(_KEYS_UNAVAILABLE)
            key = _find(self._keys, kid)
        if key is None:
            raise AuthenticationError(
                "unknown token key id" if kid is not None else "the token names no key id"
            )
        return key

    def _may_refetch_for_unknown_kid(self) -> bool:
        """Whether a kid we do not hold may fetch the keys again; a yes uses up the window."""
        if self._fetching is not None:
            return True  # a fetch under way may bring the key, and waiting for it costs nothing
        now = time.monotonic()
        if self._cache_seconds is None or now < self._unknown_kid_fetch_at:
            return False
        self._unknown_kid_fetch_at = now + _UNKNOWN_KID_REFETCH_SECONDS
        return True

    async def _refresh(self) -> bool:
        """Fetch the keys, one fetch for all callers at once; False when it failed."""
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._fetch(), name="jwks-fetch")
        # A caller that gives up must not cancel the fetch others are waiting for.
        return await asyncio.shield(self._fetching)

    async def _fetch(self) -> bool:
        try:
            keys = _signing_keys(await self._load())
        # Whatever goes wrong at the identity provider must become a refusal, not a server error.
        except Exception as error:
            log.warning(
                "JWKS from %s could not be loaded: %s: %s",
                self._source,
                type(error).__name__,
                error,
            )
            self._next_fetch_at = time.monotonic() + _FAILED_FETCH_RETRY_SECONDS
            return False
        finally:
            self._fetching = None
        log.info("JWKS loaded from %s: %d signing keys", self._source, len(keys))
        self._keys = keys
        lifetime = float("inf") if self._cache_seconds is None else self._cache_seconds
        self._next_fetch_at = time.monotonic() + lifetime
        return True


def _fetcher(url: str, http: httpx.AsyncClient | None) -> _Loader:
    async def fetch() -> object:
        if http is not None:
            response = await http.get(url, timeout=_FETCH_TIMEOUT_SECONDS)
        else:
            # Fetches are minutes apart: a client per fetch leaves nothing open to close.
            async with httpx.AsyncClient(timeout=_FETCH_TIMEOUT_SECONDS) as own:
                response = await own.get(url)
        response.raise_for_status()
        return response.json()

    return fetch


def _reader(path: Path) -> _Loader:
    async def read() -> object:
        return await asyncio.to_thread(lambda: json.loads(path.read_text(encoding="utf-8")))

    return read


def mint_token(
    settings: Settings,
    *,
    subject: str,
    roles: Iterable[Role | str],
    scopes: Iterable[str] = (),
    lifetime: dt.timedelta = dt.timedelta(hours=12),
    now: dt.datetime | None = None,
) -> str:
    """An HS256 token signed with the configured secret, as `make run` prints and tests use."""
    if settings.auth_jwt_secret is None:
        raise ValueError("no JWT secret is configured (C360_AUTH_JWT_SECRET): cannot mint tokens")
    names = list(dict.fromkeys(str(role) for role in roles))
    if not subject:
        raise ValueError("a token needs a subject")
    if Role.CUSTOMER.value in names and not _CUSTOMER_ID.fullmatch(subject):
        # It would be refused on its first use; better to say so where it is made.
        raise ValueError(f"a customer token's subject is its numeric customer id, not {subject!r}")
    now = dt.datetime.now(dt.UTC) if now is None else now
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    issued_at = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": settings.auth_jwt_issuer,
        "aud": settings.auth_jwt_audience,
        "sub": subject,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(lifetime.total_seconds()),
    }
    _set_claim(claims, settings.auth_jwt_roles_claim, names)
    scope = " ".join(dict.fromkeys(scopes))
    if scope:
        _set_claim(claims, settings.auth_jwt_scopes_claim, scope)
    return jwt.encode(claims, settings.auth_jwt_secret.get_secret_value(), algorithm=_HMAC)


def _find(keys: list[jwt.PyJWK], kid: object) -> jwt.PyJWK | None:
    if kid is None:
        # A token may leave out its kid when the provider has a single key, and only then.
        return keys[0] if len(keys) == 1 else None
    return next((key for key in keys if key.key_id == kid), None)


def _signing_keys(document: object) -> list[jwt.PyJWK]:
    """The RS256 and ES256 signing keys of a JWKS; ValueError when it holds none."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWKS: no `keys` list")
    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError):
            # Keys of other kinds (EdDSA, encryption, malformed) are not ours to use; they must
            # not keep the provider's other keys from working.
            continue
        if key.algorithm_name in _ASYMMETRIC:
            keys.append(key)
    if not keys:
        raise ValueError("the JWKS holds no RS256 or ES256 signing key")
    return keys


def _refusal(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"the token has no `{error.claim}` claim"
    for kind, message in _REFUSALS:
        if isinstance(error, kind):
            return message
    return "malformed token"


def _principal(claims: Mapping[str, Any], settings: Settings) -> Principal:
    subject = str(claims["sub"])
    if not subject:
        raise AuthenticationError("the token's subject is empty")
    roles = frozenset(
        _ROLES[name]
        for name in _names(_claim(claims, settings.auth_jwt_roles_claim))
        if name in _ROLES
    )
    if not roles:
        raise AuthenticationError("the token grants no c360 role")
    customer_id = None
    if Role.CUSTOMER in roles:
        # A customer's view is bounded by its id; another role beside it would lift that
        # bound (an analyst's "any customer" with a customer's "in clear").
        if len(roles) > 1:
            raise AuthenticationError("a customer token may hold no other role")
        if not _CUSTOMER_ID.fullmatch(subject):
            raise AuthenticationError("a customer token's subject must be its customer id")
        customer_id = int(subject)
    try:
        expires_at = dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise AuthenticationError("malformed token") from None
    return Principal(
        kind="jwt",
        name=subject,
        roles=roles,
        scopes=frozenset(_names(_claim(claims, settings.auth_jwt_scopes_claim))),
        customer_id=customer_id,
        expires_at=expires_at,
    )


def _claim(claims: Mapping[str, Any], name: str) -> object:
    """A claim by name, where dots reach into nested objects ("realm_access.roles")."""
    if name in claims:
        # Namespaced claims ("https://c360.example/roles") hold dots of their own.
        return claims[name]
    value: object = claims
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _set_claim(claims: dict[str, Any], name: str, value: object) -> None:
    *parents, last = name.split(".")
    for part in parents:
        claims = claims.setdefault(part, {})
    claims[last] = value


def _names(value: object) -> list[str]:
    """The names in a space-separated string or a list of strings; other values hold none."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item]
    return []
