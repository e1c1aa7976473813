"""The PII audit log in SQL: who read which customer's personal data in clear, and when."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sources.sql.models import AuditEntry, table

_audit = table(AuditEntry)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: dt.datetime
    request_id: str
    principal: str
    role: str
    customer_id: int
    fields: list[str]


# Rows per statement. A statement's parameters are processed on the event loop (the JSON of
# each row's fields, its time): a busy instance's second of reads, thousands of rows in one
# statement, held the loop for over 100 ms; between statements it serves requests.
ROWS_PER_STATEMENT = 250


async def write_audit_entries(
    *, connection: AsyncConnection, entries: Sequence[AuditRecord]
) -> None:
    """Append entries, `ROWS_PER_STATEMENT` at a time (their `id` is assigned here; the
    caller commits)."""
    if not entries:
        return
    rows = [
        {
            "at": e.at,
            "request_id": e.request_id,
            "principal": e.principal,
            "role": e.role,
            "customer_id": e.customer_id,
            "fields": e.fields,
        }
        for e in entries
    ]
    statement = insert(_audit)
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        await connection.execute(statement, rows[start : start + ROWS_PER_STATEMENT])


async def audit_entries(
    *, connection: AsyncConnection, customer_id: int, limit: int, before_id: int | None
) -> list[AuditRecord]:
    """One customer's entries newest first, at most `limit`, older than `before_id` if given."""
    statement = select(_audit).where(_audit.c.customer_id == customer_id)
    if before_id is not None:
        statement = statement.where(_audit.c.id < before_id)
    result = await connection.execute(statement.order_by(_audit.c.id.desc()).limit(limit))
    return [
        AuditRecord(
            id=row.id,
            at=row.at,
            request_id=row.request_id,
            principal=row.principal,
            role=row.role,
            customer_id=row.customer_id,
            fields=list(row.fields),
        )
        for row in result
    ]
