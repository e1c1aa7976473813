"""amounts in each currency's own minor unit

Before this revision, upstream `order.placed` amounts were stored as hundredths whatever the
currency: a JPY order of 1500 was kept as 150000 (its minor unit is the yen itself), a BHD
order of 12.34 as 1234 (its minor unit is the fils, a thousandth). Upstream events were the
only writer of orders in such currencies (the seed writes EUR), so every such row is one of
those and is rescaled here. `sources.money.EXPONENTS` names the currencies.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 18:45:00.000000
"""

from alembic import op


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen here as they were when the rows were written: a later change to the table in
# sources.money must not rescale again.
NO_DECIMALS = ("JPY", "KRW", "ISK")
THREE_DECIMALS = ("BHD", "KWD", "JOD", "TND")


def _rescale(currencies: tuple[str, ...], operation: str) -> None:
    listed = ", ".join(f"'{c}'" for c in currencies)
    op.execute(
        f"UPDATE order_lines SET unit_price_minor = unit_price_minor {operation} "
        f"WHERE order_id IN (SELECT id FROM orders WHERE currency IN ({listed}))"
    )
    op.execute(
        f"UPDATE orders SET total_minor = total_minor {operation} WHERE currency IN ({listed})"
    )


def upgrade() -> None:
    _rescale(NO_DECIMALS, "/ 100")
    _rescale(THREE_DECIMALS, "* 10")


def downgrade() -> None:
    _rescale(NO_DECIMALS, "* 100")
    _rescale(THREE_DECIMALS, "/ 10")
