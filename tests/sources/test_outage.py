"""Background loops over a store that is down: one line when it goes, one when it is back."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.connections import Connections
from domain.audit import AuditLog
from domain.principal import Principal, Role
from migrations.runner import upgrade
from sources.events.bus import InProcessBus
from sources.events.outbox import Relay
from sources.sql import models
from sources.sql.engine import create_engine
from tests.waits import until


def outage_lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno >= logging.WARNING]


def retries(caplog: pytest.LogCaptureFixture, logger: str) -> int:
    return sum(r.name == logger and "still down" in r.getMessage() for r in caplog.records)


async def test_the_relay_and_the_audit_log_say_once_that_sql_is_down_and_once_that_it_is_back(
    connections: Connections, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sources.events.outbox")
    caplog.set_level(logging.DEBUG, logger="domain.audit")
    # A SQLite file whose directory does not exist yet: every statement fails until it does.
    url = f"sqlite+aiosqlite:///{tmp_path}/later/c360.sqlite"
    engine = create_engine(url)
    mongo = connections.mongo[f"c360_test_{uuid.uuid4().hex[:12]}"]
    relay = Relay(
        engine=engine,
        db=mongo,  # type: ignore[arg-type]
        bus=InProcessBus(max_length=100, retention_seconds=60),
        poll_seconds=0.02,
    )
    audit = AuditLog(engine, flush_seconds=0.02, hold_seconds=20)
    agent = Principal(kind="jwt", name="jane", roles=frozenset({Role.AGENT}))
    audit.record(request_id="r1", principal=agent, customer_id=7, field_name="email")
    relay.start()
    audit.start()
    try:
        await until(lambda: retries(caplog, "sources.events.outbox") >= 3, "relay retries", 10)
        await until(lambda: retries(caplog, "domain.audit") >= 3, "audit retries", 10)
        (tmp_path / "later").mkdir()
        await asyncio.to_thread(upgrade, url)

        async def audited() -> bool:
            async with engine.connect() as sql:
                return bool(await sql.scalar(select(func.count()).select_from(models.AuditEntry)))

        await until(audited, "the kept audit entry to be written", 10)
        await until(
            lambda: len(outage_lines(caplog, "sources.events.outbox")) == 2, "relay back up", 10
        )
    finally:
        await audit.stop()
        await relay.stop()
        await engine.dispose()
        await connections.mongo.drop_database(mongo.name)
    for logger in ("sources.events.outbox", "domain.audit"):
        down, back = outage_lines(caplog, logger)
        assert " down: " in down.getMessage() and "back up after" in back.getMessage()
        assert not down.exc_info and not back.exc_info
