"""The migrations create exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from migrations.runner import upgrade
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


async def test_orders_kept_in_hundredths_are_rescaled_to_their_currencys_unit(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # As the applier wrote them before revision 0007: every amount in hundredths.
    path = tmp_path_factory.mktemp("money") / "c360.sqlite"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url, "0006")
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO customers (id, first_name, last_name, email, phone, status, "
                    "created_at, updated_at) VALUES (1, 'A', 'B', 'a@x.io', NULL, 'ACTIVE', "
                    "'2026-01-01', '2026-01-01')"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO products (sku, name, category, price_minor, currency, stock) "
                    "VALUES ('S', 'S', 'X', 1, 'EUR', 1)"
                )
            )
            for order_id, currency, minor in (
                (1, "JPY", 150000),
                (2, "BHD", 1234),
                (3, "EUR", 999),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO orders (id, customer_id, number, status, channel, "
                        "total_minor, currency, placed_at, updated_at) VALUES (:id, 1, :n, "
                        "'PLACED', 'WEB', :m, :c, '2026-01-01', '2026-01-01')"
                    ),
                    {"id": order_id, "n": f"N{order_id}", "m": minor, "c": currency},
                )
                await connection.execute(
                    text(
                        "INSERT INTO order_lines (order_id, line_number, sku, quantity, "
                        "unit_price_minor) VALUES (:id, 1, 'S', 1, :m)"
                    ),
                    {"id": order_id, "m": minor},
                )
        await asyncio.to_thread(upgrade, url)
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT o.currency, o.total_minor, l.unit_price_minor FROM orders o "
                        "JOIN order_lines l ON l.order_id = o.id ORDER BY o.id"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("JPY", 1500, 1500),
        ("BHD", 12340, 12340),
        ("EUR", 999, 999),
    ]
