"""search terms carry their kind (name, email, phone)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:30:00.000000

The terms are derived data: the table is made anew, empty, and `c360 migrate` indexes every
customer again right after (as `c360 search reindex` does).
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TERM = sa.String(length=320).with_variant(sa.String(length=320, collation="C"), "postgresql")


def _create(kind: bool) -> None:
    columns = [sa.Column("kind", sa.String(length=1), nullable=False)] if kind else []
    op.create_table(
        "customer_search",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        *columns,
        sa.Column("term", TERM, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_customer_search_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint(
            "customer_id", *(["kind"] if kind else []), "term", name=op.f("pk_customer_search")
        ),
    )


def upgrade() -> None:
    op.drop_index("ix_customer_search_term", table_name="customer_search")
    op.drop_table("customer_search")
    _create(kind=True)
    op.create_index("ix_customer_search_kind_term", "customer_search", ["kind", "term"])


def downgrade() -> None:
    op.drop_index("ix_customer_search_kind_term", table_name="customer_search")
    op.drop_table("customer_search")
    _create(kind=False)
    op.create_index("ix_customer_search_term", "customer_search", ["term"])
