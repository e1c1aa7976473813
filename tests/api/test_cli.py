"""The command line: every subcommand documents itself, settings come from C360_*."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, func, select

from api.cli import build_parser, main
from api.connections import Connections
from api.settings import Settings
from sources.sql import models


@pytest.mark.parametrize(
    "command", ["serve", "migrate", "seed", "simulator", "export-schema", "events", "search"]
)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: c360 " + command in capsys.readouterr().out


def test_serve_takes_host_and_port() -> None:
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "9000"])
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 9000, 1)


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("C360_DATA_DIR", "/srv/c360")
    monkeypatch.setenv("C360_TRACKING_TIMEOUT", "0.25")
    monkeypatch.setenv("C360_MONGO_URL", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert str(settings.data_dir) == "/srv/c360"
    assert settings.source_timeout("tracking") == 0.25
    assert settings.mongo_url is None
    assert settings.resolved_database_url() == "sqlite+aiosqlite:////srv/c360/c360.sqlite"


def test_events_dead_letters_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["events", "dead-letters", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: c360 events dead-letters" in out
    assert "--limit N" in out


# The commands run their own event loop: in a thread, so that the session's loop (and the
# background writers of the app under test, whose SQLite transactions would otherwise stay
# open, frozen) goes on meanwhile.


async def test_search_reindex_indexes_every_customer(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("C360_DATABASE_URL", str(settings.database_url))
    assert await asyncio.to_thread(main, ["search", "reindex", "--quiet", "--batch", "7"]) == 0
    assert "indexed" in capsys.readouterr().err


async def test_migrate_indexes_customers_that_have_no_search_terms(
    settings: Settings,
    connections: Connections,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    terms = models.table(models.CustomerSearchTerm)
    async with connections.engine.begin() as sql:
        before = (await sql.execute(select(func.count()).select_from(terms))).scalar_one()
        await sql.execute(delete(terms))
    monkeypatch.setenv("C360_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("C360_DATA_DIR", str(settings.data_dir))
    assert await asyncio.to_thread(main, ["migrate"]) == 0
    assert "indexing every customer" in capsys.readouterr().err
    async with connections.engine.connect() as sql:
        after = (await sql.execute(select(func.count()).select_from(terms))).scalar_one()
    assert after == before > 0
    # Terms there: nothing to index.
    assert await asyncio.to_thread(main, ["migrate"]) == 0
    assert "indexing" not in capsys.readouterr().err
