"""Customer merges in the system of record: the merge record, and orders moving between the two
customers. Each write runs inside the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sources.sql import models

# The states of a merge, kept in `moved["state"]`: a merge or an unmerge is under way (its SQL
# step committed, its MongoDB step not yet recorded), or done.
MERGING, MERGED, UNMERGING, UNMERGED = "MERGING", "MERGED", "UNMERGING", "UNMERGED"
PENDING = frozenset({MERGING, UNMERGING})


@dataclass(frozen=True, slots=True)
class MergeRecord:
    id: int
    survivor_id: int
    merged_id: int
    merged_by: str
    merged_at: dt.datetime
    moved: dict[str, Any]
    unmerged_by: str | None
    unmerged_at: dt.datetime | None

    @property
    def state(self) -> str:
        return str(self.moved["state"])


_table = models.table(models.CustomerMerge)
_orders = models.table(models.Order)


async def merge_by_id(
    *, connection: AsyncConnection, merge_id: int, lock: bool = False
) -> MergeRecord | None:
    """One merge record (locked until the transaction ends with `lock`), None when unknown."""
    statement = select(_table).where(_table.c.id == merge_id)
    row = (await connection.execute(statement.with_for_update() if lock else statement)).first()
    return MergeRecord(*row) if row else None


async def pending_merges(
    *, connection: AsyncConnection, customer_ids: Sequence[int]
) -> list[MergeRecord]:
    """Merges and unmerges involving any of the customers that are under way, oldest first."""
    rows = await connection.execute(
        select(_table)
        .where(or_(_table.c.survivor_id.in_(customer_ids), _table.c.merged_id.in_(customer_ids)))
        .order_by(_table.c.id)
    )
    # The state is inside a JSON column; a customer takes part in few merges, so filter here.
    return [r for r in (MergeRecord(*row) for row in rows) if r.state in PENDING]


async def stalled_merges(*, connection: AsyncConnection, before: dt.datetime) -> list[MergeRecord]:
    """Merges and unmerges under way since before `before` (a failure cut them short), oldest
    first. Merges are few (people make them), so the table is read whole."""
    state = _table.c.moved["state"].as_string()
    rows = await connection.execute(select(_table).where(state.in_(PENDING)).order_by(_table.c.id))
    records = [MergeRecord(*row) for row in rows]
    return [r for r in records if (r.unmerged_at or r.merged_at) < before]


async def insert_merge(
    *,
    connection: AsyncConnection,
    survivor_id: int,
    merged_id: int,
    merged_by: str,
    merged_at: dt.datetime,
    moved: dict[str, Any],
) -> MergeRecord:
    """Record a merge; returns the record with its new id."""
    result = await connection.execute(
        _table.insert().values(
            survivor_id=survivor_id,
            merged_id=merged_id,
            merged_by=merged_by,
            merged_at=merged_at,
            moved=moved,
            unmerged_by=None,
            unmerged_at=None,
        )
    )
    assert result.inserted_primary_key is not None
    [merge_id] = result.inserted_primary_key
    record = await merge_by_id(connection=connection, merge_id=int(merge_id))
    assert record is not None
    return record


async def update_merge(
    *, connection: AsyncConnection, merge_id: int, values: dict[str, Any]
) -> MergeRecord:
    """Set some of a merge record's columns; returns the updated record."""
    await connection.execute(update(_table).where(_table.c.id == merge_id).values(**values))
    record = await merge_by_id(connection=connection, merge_id=merge_id)
    assert record is not None
    return record


async def move_orders(
    *,
    connection: AsyncConnection,
    from_customer: int,
    to_customer: int,
    only: Sequence[int] | None = None,
) -> list[int]:
    """Give `from_customer`'s orders (those of `only` still there, when given) to `to_customer`;
    returns the ids of the orders moved, ascending."""
    condition = _orders.c.customer_id == from_customer
    if only is not None:
        if not only:
            return []
        condition = condition & _orders.c.id.in_(list(only))
    ids = list(
        (
            await connection.execute(
                select(_orders.c.id).where(condition).order_by(_orders.c.id).with_for_update()
            )
        ).scalars()
    )
    if ids:
        await connection.execute(
            update(_orders).where(_orders.c.id.in_(ids)).values(customer_id=to_customer)
        )
    return ids
