"""The audit log's writer: one row per request and customer, however its flushes fall."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.audit import AuditLog
from domain.principal import Principal, Role
from sources.sql import models
from sources.sql.audit import ROWS_PER_STATEMENT

AGENT = Principal(kind="jwt", name="jane", roles=frozenset({Role.AGENT}))


async def rows(engine: AsyncEngine) -> list[tuple[str, int, list[str]]]:
    async with engine.connect() as sql:
        found = await sql.execute(
            select(
                models.AuditEntry.request_id,
                models.AuditEntry.customer_id,
                models.AuditEntry.fields,
            ).order_by(models.AuditEntry.id)
        )
        return [(r.request_id, r.customer_id, r.fields) for r in found]


def read(audit: AuditLog, request_id: str, field_name: str, customer_id: int = 7) -> None:
    audit.record(
        request_id=request_id, principal=AGENT, customer_id=customer_id, field_name=field_name
    )


async def test_a_flush_during_a_request_waits_for_its_answer(own_sqlite: AsyncEngine) -> None:
    audit = AuditLog(own_sqlite, flush_seconds=3600, hold_seconds=3600)
    with audit.answering("r1"):
        read(audit, "r1", "Customer.email")
        read(audit, "r0", "Customer.phone")  # a request that has answered (or a socket's)
        assert await audit.flush() == 1
        read(audit, "r1", "Address.line1")
    assert await audit.flush() == 1
    assert await rows(own_sqlite) == [
        ("r0", 7, ["Customer.phone"]),
        ("r1", 7, ["Address.line1", "Customer.email"]),
    ]


async def test_a_request_id_two_requests_share_is_held_until_both_have_answered(
    own_sqlite: AsyncEngine,
) -> None:
    audit = AuditLog(own_sqlite, flush_seconds=3600, hold_seconds=3600)
    with audit.answering("shared"):
        with audit.answering("shared"):
            read(audit, "shared", "Customer.email")
        assert await audit.flush() == 0
    assert await audit.flush() == 1


async def test_shutdown_writes_the_reads_of_a_request_still_answering(
    own_sqlite: AsyncEngine,
) -> None:
    audit = AuditLog(own_sqlite, flush_seconds=3600, hold_seconds=3600)
    audit.start()
    with audit.answering("r1"):
        read(audit, "r1", "Customer.email")
        await audit.stop()
        assert await rows(own_sqlite) == [("r1", 7, ["Customer.email"])]


async def test_reads_are_held_no_longer_than_a_request_may_run(own_sqlite: AsyncEngine) -> None:
    # A client may send the same X-Request-ID on request after request: its id never stops
    # answering, and its reads must still be written.
    audit = AuditLog(own_sqlite, flush_seconds=3600, hold_seconds=0)
    with audit.answering("always-busy"):
        read(audit, "always-busy", "Customer.email")
        assert await audit.flush() == 1


async def test_a_write_stopped_half_way_keeps_its_entries(own_sqlite: AsyncEngine) -> None:
    audit = AuditLog(own_sqlite, flush_seconds=3600, hold_seconds=3600)
    read(audit, "r1", "Customer.email")
    writing = asyncio.create_task(audit.flush())
    await asyncio.sleep(0)  # it has taken the entries and waits on the database
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    await audit.stop()  # shutdown's final flush
    assert await rows(own_sqlite) == [("r1", 7, ["Customer.email"])]


async def test_a_request_id_longer_than_the_column_is_stored_fitted_and_distinct(
    own_sqlite: AsyncEngine,
) -> None:
    # A batch's operations add ".N" to a client's id, which may already be 64 characters.
    client_id = "x" * 64
    audit = AuditLog(own_sqlite, flush_seconds=3600, hold_seconds=3600)
    read(audit, f"{client_id}.0", "Customer.email")
    read(audit, f"{client_id}.1", "Customer.phone")
    assert await audit.flush() == 2
    stored = [request_id for request_id, _, _ in await rows(own_sqlite)]
    assert all(len(r) <= 64 and r.startswith("x" * 40) for r in stored)
    assert len(set(stored)) == 2


async def test_a_busy_second_of_reads_is_written_in_statements_of_a_few_hundred_rows(
    own_sqlite: AsyncEngine,
) -> None:
    # One statement of thousands of rows held the event loop while its parameters were
    # processed; a few hundred at a time, the loop serves requests in between.
    statements: list[int] = []

    @event.listens_for(own_sqlite.sync_engine, "before_cursor_execute")
    def count(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith("INSERT INTO audit"):
            statements.append(len(params) if isinstance(params, list) else 1)

    audit = AuditLog(own_sqlite, flush_seconds=3600, hold_seconds=3600)
    total = 2 * ROWS_PER_STATEMENT + 7
    for n in range(total):
        read(audit, f"r{n}", "Customer.email")
    assert await audit.flush() == total
    event.remove(own_sqlite.sync_engine, "before_cursor_execute", count)
    assert statements == [ROWS_PER_STATEMENT, ROWS_PER_STATEMENT, 7]
    assert len(await rows(own_sqlite)) == total
