"""SQLAlchemy models of the system of record; the Alembic migrations create these tables."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
SerialId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as UTC and always read back timezone-aware.

    SQLite keeps no zone, PostgreSQL does; this makes both return the same aware value.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table(model: type[Base]) -> Table:
    """The Core table of a model, for statements that work on columns, not objects."""
    return cast(Table, model.__table__)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    addresses: Mapped[list[Address]] = relationship(lazy="raise")
    orders: Mapped[list[Order]] = relationship(lazy="raise")


class Address(Base):
    __tablename__ = "addresses"
    __table_args__ = (UniqueConstraint("customer_id", "kind"),)

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    line1: Mapped[str] = mapped_column(String(200))
    line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Product(Base):
    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64))
    # Money is kept in minor units (cents): exact on every database, no float rounding.
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    stock: Mapped[int] = mapped_column(Integer)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        # The order history page reads newest first per customer: this index serves it.
        Index("ix_orders_customer_recent", "customer_id", "placed_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    number: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    tracking_number: Mapped[str | None] = mapped_column(String(40))
    placed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    lines: Mapped[list[OrderLine]] = relationship(lazy="raise")


class OrderLine(Base):
    __tablename__ = "order_lines"

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    line_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)


class OutboxEvent(Base):
    """A change event written in the same transaction as the change it describes."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)


class DeadLetter(Base):
    """An ingested event that was rejected, kept with its reasons for a person to look at."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    # What could be read of the envelope; any of it may be missing from a malformed event.
    event_id: Mapped[str | None] = mapped_column(String(255))
    type: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    reasons: Mapped[list[str]] = mapped_column(JSON)
    payload: Mapped[Any] = mapped_column(JSON, nullable=False)


class ApiKey(Base):
    """A service API key: only a hash of its secret is kept (`c360 keys create` shows it once)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The key's public part: found by it, then the secret's hash is compared.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    roles: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """One request's clear-text reads of one customer's PII."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_customer_id_id", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    request_id: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[int] = mapped_column(BigInteger)
    fields: Mapped[list[str]] = mapped_column(JSON)


class TrustedDocument(Base):
    """A GraphQL document registered with `c360 documents add`, by the SHA-256 of its text."""

    __tablename__ = "trusted_documents"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


# Search terms compare byte-wise ("C" collation on PostgreSQL, SQLite's default), so a prefix
# is a plain index range: term >= 'jo' AND term < 'jp'.
SearchTerm = String(320).with_variant(String(320, collation="C"), "postgresql")


class CustomerSearchTerm(Base):
    """One searchable word of a customer, lower case, and what kind of word it is: `n` a name,
    `e` the email (or its local part), `p` phone digits. The kind keeps personal data out of
    the search of those who may not read it (`sources.sql.search`)."""

    __tablename__ = "customer_search"
    __table_args__ = (Index("ix_customer_search_kind_term", "kind", "term"),)

    customer_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("customers.id"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(1), primary_key=True)
    term: Mapped[str] = mapped_column(SearchTerm, primary_key=True)


class CustomerMerge(Base):
    """One merge of a customer into a survivor: who, when, and exactly what moved (to undo)."""

    __tablename__ = "customer_merges"

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    survivor_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"), index=True)
    merged_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"), index=True)
    merged_by: Mapped[str] = mapped_column(String(255))
    merged_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # {"orders": [ids], "interactions": [ids], "tickets": [ids], "identities": [{type, value}]}
    moved: Mapped[dict[str, Any]] = mapped_column(JSON)
    unmerged_by: Mapped[str | None] = mapped_column(String(255))
    unmerged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class IdempotencyKey(Base):
    """A mutation's Idempotency-Key, per principal: the request it was first sent with, whether
    its change committed, and the answer a retry gets (`sources.sql.idempotency`)."""

    __tablename__ = "idempotency_keys"

    principal: Mapped[str] = mapped_column(String(300), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of the operation and its variables: the same key with another request is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    # The in-flight request holding the key, and since when; null once it has answered.
    token: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Set in the transaction of the change itself: the change committed exactly when this did.
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
