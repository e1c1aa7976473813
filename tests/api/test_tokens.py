"""JWT verification: HS256 with the secret, RS256/ES256 against a JWKS file or a live JWKS URL."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.settings import Settings
from api.tokens import TokenVerifier, mint_token
from domain.principal import AuthenticationError, Principal, Role, Scope
from sources.net import free_port

SECRET = "c360-tests-hs256-secret-" + "0123456789abcdef" * 2
ISSUER = "https://idp.c360.test"
AUDIENCE = "c360-tests"


def settings(**overrides: Any) -> Settings:
    """Settings with every auth field set here, so no C360_* variable leaks into a test."""
    values: dict[str, Any] = {
        "auth_jwt_secret": None,
        "auth_jwt_jwks_url": None,
        "auth_jwt_jwks_file": None,
        "auth_jwt_issuer": ISSUER,
        "auth_jwt_audience": AUDIENCE,
        "auth_jwt_roles_claim": "roles",
        "auth_jwt_scopes_claim": "scope",
        "auth_jwt_leeway_seconds": 30.0,
        "auth_jwks_cache_seconds": 300.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid claim set for the test issuer; an override of None leaves that claim out."""
    now = int(time.time())
    values = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "agent-7",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "roles": ["agent"],
        **overrides,
    }
    return {name: value for name, value in values.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(part: dict[str, Any]) -> str:
    return b64(json.dumps(part).encode())


@dataclass(frozen=True)
class SigningKey:
    """A private key of the test identity provider, published in its JWKS under `kid`."""

    kid: str
    algorithm: str  # "RS256" or "ES256"
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig"}

    def sign(self, payload: dict[str, Any], *, kid: str | None = None) -> str:
        return jwt.encode(
            payload, self.private, algorithm=self.algorithm, headers={"kid": kid or self.kid}
        )

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("rsa-1", "RS256", rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def rotated_key() -> SigningKey:
    return SigningKey("rsa-2", "RS256", rsa.generate_private_key(65537, 2048))


@pytest.fixture(scope="module")
def stranger_key() -> SigningKey:
    """Not in any JWKS: it signs as if it were `rsa-1`."""
    return SigningKey("rsa-1", "RS256", rsa.generate_private_key(65537, 2048))


@dataclass
class IdentityProvider:
    """A JWKS endpoint over real HTTP: keys a test may rotate, a failure switch, a fetch count."""

    url: str
    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    fetches: int = 0


@pytest.fixture
async def idp(rsa_key: SigningKey, ec_key: SigningKey) -> AsyncIterator[IdentityProvider]:
    port = free_port()
    provider = IdentityProvider(
        url=f"http://127.0.0.1:{port}/jwks.json", keys=[rsa_key.jwk(), ec_key.jwk()]
    )

    async def jwks(request: Request) -> JSONResponse:
        provider.fetches += 1
        await asyncio.sleep(provider.delay)
        if provider.status != 200:
            return JSONResponse({"error": "unavailable"}, status_code=provider.status)
        return JSONResponse({"keys": provider.keys})

    config = uvicorn.Config(
        Starlette(routes=[Route("/jwks.json", jwks)]),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield provider
    server.should_exit = True
    await task


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def jwks_file(tmp_path: Path, rsa_key: SigningKey, ec_key: SigningKey) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_key.jwk(), ec_key.jwk()]}), encoding="utf-8")
    return path


@pytest.fixture
def hs256() -> TokenVerifier:
    return TokenVerifier(settings(auth_jwt_secret=SECRET))


@pytest.fixture
def by_url(idp: IdentityProvider, http: httpx.AsyncClient) -> TokenVerifier:
    return TokenVerifier(settings(auth_jwt_jwks_url=idp.url), http)


async def refused(verifier: TokenVerifier, token: str) -> str:
    """The reason `token` is refused, checked to give away neither the token nor the secret."""
    with pytest.raises(AuthenticationError) as refusal:
        await verifier.verify(token)
    message = str(refusal.value)
    assert token not in message
    assert SECRET not in message
    signature = token.rpartition(".")[2]
    assert not signature or signature not in message
    return message


def mint(**overrides: Any) -> str:
    """A development token from `mint_token`, for the test issuer and secret."""
    arguments: dict[str, Any] = {"subject": "agent-7", "roles": [Role.AGENT], **overrides}
    return mint_token(settings(auth_jwt_secret=SECRET), **arguments)


# Valid tokens


async def test_hs256_token_becomes_a_principal(hs256: TokenVerifier) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    token = mint(
        roles=[Role.AGENT, "analyst", "superuser"],
        scopes=[Scope.CUSTOMERS, "orders:read"],
        lifetime=dt.timedelta(hours=1),
        now=now,
    )
    principal = await hs256.verify(token)
    assert principal == Principal(
        kind="jwt",
        name="agent-7",
        roles=frozenset({Role.AGENT, Role.ANALYST}),
        scopes=frozenset({"customers:read", "orders:read"}),
        customer_id=None,
    )
    assert principal.expires_at == now + dt.timedelta(hours=1)
    assert principal.expires_at.tzinfo is not None


async def test_rs256_and_es256_tokens_verify_against_a_jwks_file(
    jwks_file: Path, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    verifier = TokenVerifier(settings(auth_jwt_jwks_file=jwks_file))
    payload = claims(sub="svc-billing", roles="service", scope="customers:read orders:read")
    for key in (rsa_key, ec_key):
        principal = await verifier.verify(key.sign(payload))
        assert principal.kind == "jwt"
        assert principal.name == "svc-billing"
        assert principal.roles == {Role.SERVICE}
        assert principal.scopes == {"customers:read", "orders:read"}
        assert principal.expires_at == dt.datetime.fromtimestamp(payload["exp"], dt.UTC)


async def test_jwks_url_is_fetched_once_and_cached(
    by_url: TokenVerifier, idp: IdentityProvider, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    idp.delay = 0.05  # the concurrent first requests overlap the one fetch
    tokens = [rsa_key.sign(claims()), ec_key.sign(claims(scope=["tickets:read"]))] * 10
    principals = await asyncio.gather(*(by_url.verify(token) for token in tokens))
    assert {principal.roles for principal in principals} == {frozenset({Role.AGENT})}
    assert principals[1].scopes == {"tickets:read"}
    await by_url.verify(rsa_key.sign(claims()))
    assert idp.fetches == 1


async def test_jwks_is_fetched_again_once_its_cache_time_is_up(
    idp: IdentityProvider, rsa_key: SigningKey
) -> None:
    # No client given: the verifier fetches with one of its own.
    verifier = TokenVerifier(settings(auth_jwt_jwks_url=idp.url, auth_jwks_cache_seconds=0.05))
    await verifier.verify(rsa_key.sign(claims()))
    await asyncio.sleep(0.1)
    # Another token: a token that verified is remembered, so the same one would not fetch.
    await verifier.verify(rsa_key.sign(claims(jti="second")))
    assert idp.fetches == 2


# Claims


async def test_expired_token_is_refused(hs256: TokenVerifier) -> None:
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    token = mint(now=issued, lifetime=dt.timedelta(hours=1))
    assert await refused(hs256, token) == "the token has expired"


async def test_leeway_accepts_a_token_just_expired(hs256: TokenVerifier) -> None:
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    token = mint(now=issued, lifetime=dt.timedelta(minutes=10) - dt.timedelta(seconds=10))
    assert (await hs256.verify(token)).name == "agent-7"


async def test_token_not_valid_yet_is_refused(hs256: TokenVerifier) -> None:
    token = mint(now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert await refused(hs256, token) == "the token is not valid yet"


async def test_token_for_another_audience_is_refused() -> None:
    verifier = TokenVerifier(settings(auth_jwt_secret=SECRET, auth_jwt_audience="billing"))
    assert await refused(verifier, mint()) == "the token is meant for another audience"


async def test_token_from_another_issuer_is_refused() -> None:
    verifier = TokenVerifier(settings(auth_jwt_secret=SECRET, auth_jwt_issuer="https://evil.test"))
    assert await refused(verifier, mint()) == "the token's issuer is not accepted"


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub"])
async def test_token_missing_a_required_claim_is_refused(
    claim: str, jwks_file: Path, rsa_key: SigningKey
) -> None:
    verifier = TokenVerifier(settings(auth_jwt_jwks_file=jwks_file))
    token = rsa_key.sign(claims(**{claim: None}))
    assert await refused(verifier, token) == f"the token has no `{claim}` claim"


async def test_roles_come_from_a_nested_claim(jwks_file: Path, rsa_key: SigningKey) -> None:
    verifier = TokenVerifier(
        settings(auth_jwt_jwks_file=jwks_file, auth_jwt_roles_claim="realm_access.roles")
    )
    payload = claims(roles=None, realm_access={"roles": ["offline_access", "analyst"]})
    assert (await verifier.verify(rsa_key.sign(payload))).roles == {Role.ANALYST}
    flat = claims(roles=["admin"])
    assert await refused(verifier, rsa_key.sign(flat)) == "the token grants no c360 role"


async def test_mint_token_writes_nested_and_namespaced_claims() -> None:
    configured = settings(
        auth_jwt_secret=SECRET,
        auth_jwt_roles_claim="realm_access.roles",
        auth_jwt_scopes_claim="https://c360.test/scopes",
    )
    token = mint_token(configured, subject="svc", roles=["service"], scopes=["pii:read"])
    principal = await TokenVerifier(configured).verify(token)
    assert principal.roles == {Role.SERVICE}
    assert principal.scopes == {"pii:read"}


async def test_customer_role_sets_customer_id(hs256: TokenVerifier) -> None:
    principal = await hs256.verify(mint(subject="42", roles=[Role.CUSTOMER]))
    assert principal.customer_id == 42
    assert principal.roles == {Role.CUSTOMER}


async def test_customer_token_with_a_non_numeric_subject_is_refused(
    hs256: TokenVerifier,
) -> None:
    token = jwt.encode(claims(sub="alice", roles=["customer"]), SECRET, algorithm="HS256")
    assert await refused(hs256, token) == "a customer token's subject must be its customer id"
    with pytest.raises(ValueError, match="customer id"):
        mint(subject="alice", roles=[Role.CUSTOMER])


async def test_token_without_a_known_role_is_refused(hs256: TokenVerifier) -> None:
    assert await refused(hs256, mint(roles=["superuser"])) == "the token grants no c360 role"
    assert await refused(hs256, mint(roles=[])) == "the token grants no c360 role"


# Signatures and algorithms


async def test_malformed_token_is_refused(hs256: TokenVerifier) -> None:
    for token in ("not-a-token", "a.b.c", segment({"alg": "HS256"}) + ".%%%.sig"):
        assert await refused(hs256, token) == "malformed token"


async def test_token_signed_by_another_key_is_refused(
    by_url: TokenVerifier, stranger_key: SigningKey
) -> None:
    token = stranger_key.sign(claims())
    assert await refused(by_url, token) == "the token's signature does not verify"


@pytest.mark.parametrize("kind", ["HS256", "RS256"])
async def test_tampered_payload_is_refused(kind: str, jwks_file: Path, rsa_key: SigningKey) -> None:
    verifier = TokenVerifier(settings(auth_jwt_secret=SECRET, auth_jwt_jwks_file=jwks_file))
    token = mint() if kind == "HS256" else rsa_key.sign(claims())
    header, _, signature = token.split(".")
    promoted = segment(claims(roles=["admin"]))
    forged = f"{header}.{promoted}.{signature}"
    assert await refused(verifier, forged) == "the token's signature does not verify"


async def test_alg_none_is_refused(hs256: TokenVerifier, by_url: TokenVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        token = f"{segment({'alg': alg, 'typ': 'JWT'})}.{segment(claims())}."
        assert await refused(hs256, token) == "unsupported token algorithm"
        assert await refused(by_url, token) == "unsupported token algorithm"


async def test_other_algorithms_are_refused(hs256: TokenVerifier) -> None:
    token = jwt.encode(claims(), SECRET * 2, algorithm="HS512")
    assert await refused(hs256, token) == "unsupported token algorithm"


async def test_hs256_is_refused_when_only_a_jwks_is_configured(
    by_url: TokenVerifier, idp: IdentityProvider
) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert await refused(by_url, token) == "unsupported token algorithm"
    assert idp.fetches == 0


async def test_rs256_is_refused_when_only_a_secret_is_configured(
    hs256: TokenVerifier, rsa_key: SigningKey
) -> None:
    assert await refused(hs256, rsa_key.sign(claims())) == "unsupported token algorithm"


def hmac_signed(key: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """An HS256 token made by hand: PyJWT rightly refuses to use a PEM key as an HMAC secret."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_public_key_as_hmac_secret_is_refused(
    by_url: TokenVerifier, jwks_file: Path, rsa_key: SigningKey
) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}
    token = hmac_signed(rsa_key.public_pem(), header, claims(roles=["admin"]))
    assert await refused(by_url, token) == "unsupported token algorithm"
    # With a secret as well, an HS256 token is checked with the secret, never with a JWKS key.
    both = TokenVerifier(settings(auth_jwt_secret=SECRET, auth_jwt_jwks_file=jwks_file))
    assert await refused(both, token) == "the token's signature does not verify"


async def test_token_algorithm_must_match_its_key(
    jwks_file: Path, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    verifier = TokenVerifier(settings(auth_jwt_jwks_file=jwks_file))
    token = ec_key.sign(claims(), kid=rsa_key.kid)
    assert await refused(verifier, token) == "unsupported token algorithm"


# Key ids and rotation


async def test_new_kid_refetches_once_and_unknown_kids_do_not_hammer_the_idp(
    by_url: TokenVerifier,
    idp: IdentityProvider,
    rsa_key: SigningKey,
    rotated_key: SigningKey,
    stranger_key: SigningKey,
) -> None:
    await by_url.verify(rsa_key.sign(claims()))
    assert idp.fetches == 1

    idp.keys = [rotated_key.jwk(), rsa_key.jwk()]
    idp.delay = 0.05  # the concurrent requests overlap the one refetch
    rotated = rotated_key.sign(claims(sub="after-rotation"))
    principals = await asyncio.gather(*(by_url.verify(rotated) for _ in range(10)))
    assert {principal.name for principal in principals} == {"after-rotation"}
    assert idp.fetches == 2

    made_up = stranger_key.sign(claims(), kid="made-up")
    for _ in range(3):
        assert await refused(by_url, made_up) == "unknown token key id"
    assert idp.fetches == 2


async def test_unknown_kid_in_a_jwks_file_is_refused(
    jwks_file: Path, stranger_key: SigningKey
) -> None:
    verifier = TokenVerifier(settings(auth_jwt_jwks_file=jwks_file))
    token = stranger_key.sign(claims(), kid="made-up")
    assert await refused(verifier, token) == "unknown token key id"


async def test_token_without_kid_needs_a_single_key_jwks(
    tmp_path: Path, jwks_file: Path, rsa_key: SigningKey
) -> None:
    token = jwt.encode(claims(), rsa_key.private, algorithm="RS256")
    several = TokenVerifier(settings(auth_jwt_jwks_file=jwks_file))
    assert await refused(several, token) == "the token names no key id"
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"keys": [rsa_key.jwk()]}), encoding="utf-8")
    one = TokenVerifier(settings(auth_jwt_jwks_file=single))
    assert (await one.verify(token)).name == "agent-7"


async def test_jwks_ignores_keys_it_cannot_use(tmp_path: Path, rsa_key: SigningKey) -> None:
    path = tmp_path / "jwks.json"
    hmac_key = {"kty": "oct", "k": b64(SECRET.encode()), "kid": "shared"}
    encryption = {**rsa_key.jwk(), "kid": "enc", "use": "enc"}
    garbage = {"kty": "RSA", "kid": "broken"}
    keys = [hmac_key, encryption, garbage, "not a key", rsa_key.jwk()]
    path.write_text(json.dumps({"keys": keys}), encoding="utf-8")
    verifier = TokenVerifier(settings(auth_jwt_jwks_file=path))
    assert (await verifier.verify(rsa_key.sign(claims()))).name == "agent-7"
    # A JWKS never supplies an HMAC secret, even one that names it.
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "shared"})
    assert await refused(verifier, token) == "unsupported token algorithm"


# The identity provider failing


@pytest.fixture
def jwks_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="api.tokens"):
        yield caplog


async def test_jwks_fetch_failure_is_refused_and_logged(
    by_url: TokenVerifier,
    idp: IdentityProvider,
    rsa_key: SigningKey,
    jwks_log: pytest.LogCaptureFixture,
) -> None:
    idp.status = 503
    token = rsa_key.sign(claims())
    assert await refused(by_url, token) == "the identity provider's keys could not be fetched"
    assert "JWKS from" in jwks_log.text and "503" in jwks_log.text
    # Until the retry time, requests fail fast instead of each fetching again.
    assert await refused(by_url, token) == "the identity provider's keys could not be fetched"
    assert idp.fetches == 1


async def test_unreachable_jwks_url_is_refused(
    http: httpx.AsyncClient, rsa_key: SigningKey, jwks_log: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    verifier = TokenVerifier(settings(auth_jwt_jwks_url=url), http)
    message = await refused(verifier, rsa_key.sign(claims()))
    assert message == "the identity provider's keys could not be fetched"
    assert "ConnectError" in jwks_log.text


async def test_keys_in_hand_outlive_a_failed_refresh(
    idp: IdentityProvider,
    http: httpx.AsyncClient,
    rsa_key: SigningKey,
    jwks_log: pytest.LogCaptureFixture,
) -> None:
    verifier = TokenVerifier(
        settings(auth_jwt_jwks_url=idp.url, auth_jwks_cache_seconds=0.05), http
    )
    await verifier.verify(rsa_key.sign(claims()))
    idp.status = 500
    await asyncio.sleep(0.1)
    assert (await verifier.verify(rsa_key.sign(claims(jti="second")))).name == "agent-7"
    assert idp.fetches == 2
    assert "could not be loaded" in jwks_log.text


async def test_unreadable_jwks_file_is_refused(
    tmp_path: Path, rsa_key: SigningKey, jwks_log: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text("{not json", encoding="utf-8")
    verifier = TokenVerifier(settings(auth_jwt_jwks_file=path))
    message = await refused(verifier, rsa_key.sign(claims()))
    assert message == "the identity provider's keys could not be fetched"
    assert str(path) in jwks_log.text


# Configuration


def test_mint_token_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="no JWT secret"):
        mint_token(settings(), subject="agent-7", roles=[Role.AGENT])


def test_mint_token_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        mint(now=dt.datetime(2030, 1, 1))


def test_jwks_url_and_file_together_are_refused(tmp_path: Path) -> None:
    both = settings(auth_jwt_jwks_url="https://idp.test/jwks", auth_jwt_jwks_file=tmp_path)
    with pytest.raises(ValueError, match="not both"):
        TokenVerifier(both)


async def test_a_verified_token_is_remembered_until_it_expires(hs256: TokenVerifier) -> None:
    token = mint(
        lifetime=dt.timedelta(seconds=1), now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    )
    first = await hs256.verify(token)
    assert await hs256.verify(token) is first  # no second signature check
    await asyncio.sleep(1.1)
    assert await refused(hs256, token) == "the token has expired"
