"""What only `admin` may ask: the PII audit log."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import strawberry

from resolvers.access import admin_only
from resolvers.common import Info, PageInfo, edge_cursor, is_record_id, page_key, parse_id
from sources.paging import Page, Position
from sources.sql.audit import AuditRecord, audit_entries


@strawberry.type(description="One request's clear-text reads of one customer's personal data.")
class AuditEntry:
    at: dt.datetime = strawberry.field(description="When the request read the data.")
    request_id: str = strawberry.field(description="The request (X-Request-ID) that read it.")
    principal: str = strawberry.field(description="Who read it: an API key name or token subject.")
    role: str = strawberry.field(description="The role it read it as.")
    customer_id: strawberry.ID = strawberry.field(description="Whose data was read.")
    fields: list[str] = strawberry.field(description="The fields read, as `Type.field`.")

    @classmethod
    def from_record(cls, record: AuditRecord) -> AuditEntry:
        return cls(
            at=record.at,
            request_id=record.request_id,
            principal=record.principal,
            role=record.role,
            customer_id=strawberry.ID(str(record.customer_id)),
            fields=record.fields,
        )


@strawberry.type(description="An audit entry with the cursor that points at it.")
class AuditEntryEdge:
    position: strawberry.Private[Position]
    cursor: str = strawberry.field(resolver=edge_cursor, description="Opaque cursor of this entry.")
    node: AuditEntry = strawberry.field(description="The entry.")


@strawberry.type(description="A page of the audit log, newest first.")
class AuditEntryConnection:
    edges: list[AuditEntryEdge] = strawberry.field(description="The entries of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page sits.")


async def _audit_page(
    info: Info, customer_id: int, limit: int, before: str | None
) -> list[AuditRecord]:
    async with info.context.connections.engine.connect() as connection:
        return await audit_entries(
            connection=connection,
            customer_id=customer_id,
            limit=limit,
            before_id=int(before) if before else None,
        )


@strawberry.type
class AdminQuery:
    @strawberry.field(
        description="Who read a customer's personal data in clear, newest first (admin only). "
        "Entries are written in batches, within about a second of the read.",
        extensions=[admin_only()],
        # Read from the table at the time of asking, not through a loader: the entries a
        # request's own reads add may land between two runs of it (`Engine.DIFFERENTIAL`).
        metadata={"reads_outside_loaders": True},
    )
    async def audit_log(
        self,
        info: Info,
        customer_id: Annotated[strawberry.ID, strawberry.argument(description="The customer.")],
        first: Annotated[
            int | None, strawberry.argument(description="Page size: default 20, at most 100.")
        ] = None,
        after: Annotated[
            str | None, strawberry.argument(description="Entries after this `endCursor`.")
        ] = None,
    ) -> AuditEntryConnection | None:
        key = page_key(info, parse_id(customer_id) or 0, first, after, valid_id=is_record_id)
        # A task of its own: c360's engine resumes a resolver from the future it waited on,
        # outside any task, and opening a new PostgreSQL connection (asyncpg's connect) needs
        # one (`asyncio.timeout`). Loaders' batches run in tasks already.
        records = await asyncio.ensure_future(
            _audit_page(info, key.owner, key.first + 1, key.after.id if key.after else None)
        )
        page = Page(
            items=records[: key.first],
            has_next=len(records) > key.first,
            positions=[Position(at=r.at, id=str(r.id)) for r in records[: key.first]],
        )
        return AuditEntryConnection(
            edges=[
                AuditEntryEdge(position=p, node=AuditEntry.from_record(r))
                for p, r in zip(page.positions, page.items, strict=True)
            ],
            page_info=PageInfo.of(page, key),
        )
