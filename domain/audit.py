"""The PII audit trail: clear-text reads are buffered in memory and written in batches.

A request only adds to an in-memory buffer (no I/O on the request path); a background task
writes what has gathered every `audit_flush_seconds`, one row per request and customer with
every field read. An HTTP request's reads are held back from the writer until it has answered
(`answering`), so a flush that falls while it runs cannot split its row in two. On shutdown
the buffer is written before the connections close. If a write fails, the entries are kept
and tried again on the next flush, so a database blip loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.principal import Principal
from sources.outage import Outage, stopping
from sources.sql.audit import AuditRecord, write_audit_entries
from sources.sql.engine import begin_write

log = logging.getLogger(__name__)

# The audit table's request id column (`sources.sql.models.AuditEntry`).
REQUEST_ID_LENGTH = 64

# Past this many buffered rows (the database has been down a while) the oldest are dropped,
# loudly, rather than the process growing without bound.
MAX_BUFFERED = 100_000


@dataclass(slots=True)
class _Pending:
    at: dt.datetime
    principal: str
    role: str
    fields: set[str] = field(default_factory=set)


class AuditLog:
    """Buffers clear-text PII reads and writes them in the background."""

    def __init__(self, engine: AsyncEngine, *, flush_seconds: float, hold_seconds: float) -> None:
        self._engine = engine
        self._flush_seconds = flush_seconds
        # The longest an answering request's reads are held back from the writer: longer than
        # a request may run, so only a request id that never stops being in use (requests in a
        # row sharing a client's X-Request-ID) reaches it, and its reads are written anyway.
        self._hold = dt.timedelta(seconds=hold_seconds)
        # By request, principal and customer: the request id may come from the client
        # (X-Request-ID), so it alone must not merge two principals' reads into one entry.
        self._pending: dict[tuple[str, str, str, int], _Pending] = {}
        self._retry: list[AuditRecord] = []
        # Request ids being answered, with how many requests use each (a client may reuse one).
        self._answering: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._outage = Outage(
            "audit log: SQL", log, meanwhile="entries are kept and written once it is back"
        )

    def record(
        self, *, request_id: str, principal: Principal, customer_id: int, field_name: str
    ) -> None:
        """Note that `principal` read `field_name` of `customer_id` in clear (no I/O)."""
        key = (request_id, f"{principal.kind}:{principal.name}", principal.role, customer_id)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(
                at=dt.datetime.now(dt.UTC), principal=principal.name, role=principal.role
            )
        pending.fields.add(field_name)

    @contextlib.contextmanager
    def answering(self, request_id: str) -> Iterator[None]:
        """Hold `request_id`'s reads back from the periodic writer while it is answered."""
        answering = self._answering
        answering[request_id] += 1
        try:
            yield
        finally:
            answering[request_id] -= 1
            if not answering[request_id]:
                del answering[request_id]

    def start(self) -> None:
        """Write buffered entries every `flush_seconds` until `stop`."""
        self._task = asyncio.create_task(self._run(), name="audit-log")

    async def stop(self) -> None:
        """Stop the background writer and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush(unanswered_too=True)

    async def flush(self, *, unanswered_too: bool = False) -> int:
        """Write every buffered entry of a request that has answered (and, on shutdown, of one
        that has not); the number written."""
        async with self._lock:
            pending, self._pending = self._pending, {}
            if self._answering and not unanswered_too:
                since = dt.datetime.now(dt.UTC) - self._hold
                held = [k for k, p in pending.items() if k[0] in self._answering and p.at > since]
                for key in held:
                    self._pending[key] = pending.pop(key)
            entries = self._retry + [
                AuditRecord(
                    id=0,
                    at=p.at,
                    request_id=_fitted(request_id),
                    principal=p.principal,
                    role=p.role,
                    customer_id=customer_id,
                    fields=sorted(p.fields),
                )
                for (request_id, _, _, customer_id), p in pending.items()
            ]
            self._retry = []
            if not entries:
                return 0
            try:
                async with begin_write(self._engine) as connection:
                    await write_audit_entries(connection=connection, entries=entries)
            except Exception as error:
                self._outage.failed(error)
                log.debug("audit log: %d entries kept for retry", len(entries))
                if len(entries) > MAX_BUFFERED:
                    log.error(
                        "audit log buffer full: %d entries dropped", len(entries) - MAX_BUFFERED
                    )
                    entries = entries[-MAX_BUFFERED:]
                self._retry = entries
                return 0
            except BaseException:  # stopped mid-write (shutdown): the final flush writes them
                self._retry = entries
                raise
            self._outage.succeeded()
            return len(entries)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            await self.flush()
            if stopping():  # the stop, turned into the database's error by its driver
                raise asyncio.CancelledError


def _fitted(request_id: str) -> str:
    """`request_id` as the audit table holds it: unchanged when it fits, else its start and a
    digest of the whole. A batch's operations add `.N` to a client's id, which may already
    take the column's 64 characters; one row too long would fail every write after it."""
    if len(request_id) <= REQUEST_ID_LENGTH:
        return request_id
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:12]
    return f"{request_id[: REQUEST_ID_LENGTH - 13]}~{digest}"
