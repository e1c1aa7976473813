"""API keys: shown once, stored as a hash, verified from an in-process cache."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Collection, Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from api.cli import main
from api.keys import ApiKeyInfo, KeyRequestError, KeyVerifier, create_key, list_keys, revoke_key
from domain.principal import AuthenticationError, Role, Scope
from sources.sql.engine import create_engine
from sources.sql.models import ApiKey, table

api_keys = table(ApiKey)


@pytest.fixture
async def engine(sql_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(sql_url)
    yield created
    await created.dispose()


def unique_name(label: str = "key") -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


async def new_key(
    engine: AsyncEngine,
    *,
    roles: Collection[Role] = (Role.SERVICE,),
    scopes: Collection[str] = (Scope.ORDERS,),
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKeyInfo, str]:
    return await create_key(
        engine=engine, name=unique_name(), roles=roles, scopes=scopes, expires_at=expires_at
    )


@contextlib.contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def refusal(verifier: KeyVerifier, key: str) -> str:
    with pytest.raises(AuthenticationError) as refused:
        await verifier.verify(key)
    message = str(refused.value)
    assert key not in message or not key
    return message


def other_secret(key: str) -> str:
    last = "A" if key[-1] != "A" else "B"
    return key[:-1] + last


async def test_a_created_key_verifies_as_its_principal(engine: AsyncEngine) -> None:
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    info, key = await new_key(
        engine,
        roles=[Role.SERVICE, Role.ANALYST],
        scopes=[Scope.ORDERS, "customers:read"],
        expires_at=expires_at,
    )
    assert key.startswith(f"c360_{info.prefix}_")
    assert len(info.prefix) == 12
    assert len(key) == len("c360_") + 12 + 1 + 43
    assert info.roles == {Role.SERVICE, Role.ANALYST}
    assert info.scopes == {"orders:read", "customers:read"}
    assert info.revoked_at is None

    principal = await KeyVerifier(engine, 5.0).verify(key)
    assert principal.kind == "api-key"
    assert principal.name == info.name
    assert principal.roles == {Role.SERVICE, Role.ANALYST}
    assert principal.scopes == {"orders:read", "customers:read"}
    assert principal.expires_at == expires_at
    assert principal.role == "analyst"


async def test_only_a_hash_of_the_key_is_stored(engine: AsyncEngine) -> None:
    info, key = await new_key(engine)
    async with engine.connect() as connection:
        row = (await connection.execute(select(api_keys).where(api_keys.c.name == info.name))).one()
    assert row.secret_hash == hashlib.sha256(key.encode()).hexdigest()
    assert all(key not in str(value) for value in row)


async def test_listing_never_shows_the_hash(engine: AsyncEngine) -> None:
    info, key = await new_key(engine)
    async with engine.connect() as connection:
        stored_hash = (
            await connection.execute(
                select(api_keys.c.secret_hash).where(api_keys.c.name == info.name)
            )
        ).scalar_one()
    listed = {k.name: k for k in await list_keys(engine=engine)}
    assert listed[info.name] == dataclasses.replace(info, created_at=listed[info.name].created_at)
    assert "hash" not in " ".join(f.name for f in dataclasses.fields(ApiKeyInfo))
    assert stored_hash not in repr(listed) and key not in repr(listed)


async def test_a_wrong_secret_reads_as_unknown(engine: AsyncEngine) -> None:
    _, key = await new_key(engine)
    verifier = KeyVerifier(engine, 5.0)
    assert await refusal(verifier, other_secret(key)) == "unknown API key"
    # Refused from the cache too, and the right key still passes.
    assert await refusal(verifier, other_secret(key)) == "unknown API key"
    assert (await verifier.verify(key)).kind == "api-key"


async def test_an_unknown_key_is_refused_and_briefly_remembered(engine: AsyncEngine) -> None:
    _, key = await new_key(engine)
    unknown = "c360_" + "x" * 12 + key[17:]
    verifier = KeyVerifier(engine, 5.0)
    assert await refusal(verifier, unknown) == "unknown API key"
    with statements(engine) as sent:
        assert await refusal(verifier, unknown) == "unknown API key"
    assert sent == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        "c360_",
        "c360_abc_def",
        "not-an-api-key",
        "c360_" + "a" * 12 + "_" + "b" * 42,
        "c360_" + "a" * 12 + "_" + "b" * 44,
        "c360_" + "a" * 12 + "-" + "b" * 43,
        "c360_" + "a" * 12 + "_" + "b" * 42 + "=",
        "C360_" + "a" * 12 + "_" + "b" * 43,
    ],
)
async def test_a_malformed_key_is_refused_without_sql(engine: AsyncEngine, key: str) -> None:
    verifier = KeyVerifier(engine, 5.0)
    with statements(engine) as sent:
        assert await refusal(verifier, key) == "malformed API key"
    assert sent == []


async def test_a_revoked_key_is_refused_once_the_cache_expires(engine: AsyncEngine) -> None:
    info, key = await new_key(engine)
    verifier = KeyVerifier(engine, 0.05)
    await verifier.verify(key)

    assert await revoke_key(engine=engine, name=info.name)
    # Remembered for cache_seconds: that is the documented revocation delay.
    await verifier.verify(key)
    await asyncio.sleep(0.06)
    assert await refusal(verifier, key) == "the API key was revoked"
    # Only the key's holder learns it was revoked.
    assert await refusal(verifier, other_secret(key)) == "unknown API key"

    [listed] = [k for k in await list_keys(engine=engine) if k.name == info.name]
    assert listed.revoked_at is not None
    assert await revoke_key(engine=engine, name=info.name)
    [again] = [k for k in await list_keys(engine=engine) if k.name == info.name]
    assert again.revoked_at == listed.revoked_at


async def test_revoking_an_unknown_name_says_so(engine: AsyncEngine) -> None:
    assert not await revoke_key(engine=engine, name=unique_name("missing"))


async def test_expiry_is_checked_on_every_call_even_from_the_cache(engine: AsyncEngine) -> None:
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)
    _, key = await new_key(engine, expires_at=expires_at)
    verifier = KeyVerifier(engine, 60.0)
    await verifier.verify(key)
    await asyncio.sleep((expires_at - dt.datetime.now(dt.UTC)).total_seconds() + 0.01)
    with statements(engine) as sent:
        assert await refusal(verifier, key) == "the API key has expired"
    assert sent == []


async def test_a_key_stored_expired_is_refused(engine: AsyncEngine) -> None:
    info, key = await new_key(engine)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    async with engine.begin() as connection:
        await connection.execute(
            update(api_keys).where(api_keys.c.name == info.name).values(expires_at=past)
        )
    assert await refusal(KeyVerifier(engine, 5.0), key) == "the API key has expired"


async def test_a_cached_key_costs_no_sql_round_trip(engine: AsyncEngine) -> None:
    _, key = await new_key(engine)
    verifier = KeyVerifier(engine, 60.0)
    with statements(engine) as first:
        await verifier.verify(key)
    assert len(first) == 1
    with statements(engine) as later:
        for _ in range(5):
            await verifier.verify(key)
    assert later == []


async def test_concurrent_first_verifications_share_one_query(engine: AsyncEngine) -> None:
    info, key = await new_key(engine)
    verifier = KeyVerifier(engine, 60.0)
    with statements(engine) as sent:
        principals = await asyncio.gather(*(verifier.verify(key) for _ in range(20)))
    assert {p.name for p in principals} == {info.name}
    assert len(sent) == 1


async def test_names_are_unique(engine: AsyncEngine) -> None:
    info, _ = await new_key(engine)
    with pytest.raises(KeyRequestError, match="already exists"):
        await create_key(engine=engine, name=info.name, roles=[Role.ADMIN])


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"scopes": ["orders:write"]}, "unknown scope orders:write; valid: customers:read, "),
        ({"roles": []}, "at least one role"),
        ({"roles": ["root"]}, "unknown role root; valid: agent, analyst, "),
        ({"name": ""}, "name is 1 to 100"),
        ({"name": "  "}, "name is 1 to 100"),
        ({"name": "x" * 101}, "name is 1 to 100"),
        ({"name": "two\nlines"}, "printable"),
        ({"expires_at": dt.datetime(2000, 1, 1, tzinfo=dt.UTC)}, "in the future"),
        ({"expires_at": dt.datetime(2999, 1, 1)}, "time zone"),
    ],
)
async def test_a_bad_request_is_refused_clearly(
    engine: AsyncEngine, request_: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"name": unique_name(), "roles": [Role.SERVICE], **request_}
    with pytest.raises(KeyRequestError, match=message.replace("\n", "")):
        await create_key(engine=engine, **arguments)
    assert arguments["name"] not in {k.name for k in await list_keys(engine=engine)}


async def test_keys_are_managed_from_the_command_line(
    sql_url: str,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("C360_DATABASE_URL", sql_url)
    name = unique_name("cli")
    create = ["keys", "create", "--name", name, "--role", "service", "--scope", "orders:read"]
    capsys.readouterr()
    # The command runs its own event loop, as it does from a shell: off this test's loop.
    assert await asyncio.to_thread(main, [*create, "--expires-in-days", "7"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert "will not be shown again" in err and key not in err
    principal = await KeyVerifier(engine, 0.05).verify(key)
    assert principal.name == name
    assert principal.roles == {Role.SERVICE} and principal.scopes == {"orders:read"}
    assert principal.expires_at is not None
    assert principal.expires_at - dt.datetime.now(dt.UTC) > dt.timedelta(days=6)

    assert await asyncio.to_thread(main, create) == 2
    out, err = capsys.readouterr()
    assert out == "" and "already exists" in err

    assert await asyncio.to_thread(main, ["keys", "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "ROLES", "SCOPES", "CREATED", "EXPIRES", "REVOKED"]
    [row] = [line.split() for line in rows if line.split()[0] == name]
    assert row[1:3] == ["service", "orders:read"] and row[5] == "-"
    assert key not in "\n".join(rows)

    assert await asyncio.to_thread(main, ["keys", "revoke", name]) == 0
    assert "revoked" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["keys", "list"]) == 0
    [row] = [line.split() for line in capsys.readouterr().out.splitlines() if name in line]
    assert row[5] != "-"

    assert await asyncio.to_thread(main, ["keys", "revoke", f"{name}-missing"]) == 1
    assert "no API key is named" in capsys.readouterr().err


def test_keys_create_refuses_an_unknown_scope(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "create", "--name", "x", "--role", "service", "--scope", "orders:write"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'orders:write'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["keys", "keys create", "keys list", "keys revoke"])
def test_keys_commands_have_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    assert "usage: c360 " + command in capsys.readouterr().out
