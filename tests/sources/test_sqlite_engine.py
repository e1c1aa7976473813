"""The SQLite engine's connection set-up: a brand-new database file opened by many at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sources.sql.engine import create_engine


async def _connect(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect():
            pass
    finally:
        await engine.dispose()


async def test_connections_racing_to_switch_a_new_file_to_wal_all_connect(tmp_path: Path) -> None:
    # Two connections switching one new file to WAL at once: SQLite answers one of them
    # "database is locked" at once, busy timeout or not (it was 2 in 240 here before the fix).
    for round_ in range(40):
        url = f"sqlite+aiosqlite:///{tmp_path}/{round_}.sqlite"
        await asyncio.gather(*(_connect(url) for _ in range(8)))
