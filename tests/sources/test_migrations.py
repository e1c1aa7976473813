"""The migrations create exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from sources.sql.engine import create_engine
from sources.sql.models import Base


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrated_database_matches_the_models(sql_url: str) -> None:
    engine = create_engine(sql_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
            tables = await connection.run_sync(_tables)
    finally:
        await engine.dispose()
    assert {"customers", "addresses", "products", "orders", "order_lines", "outbox"} <= tables
