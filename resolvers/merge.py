"""Merging two records of one person, and undoing it (`domain.merges`)."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any

import strawberry

import domain
from domain.errors import ChangeRejectedError
from resolvers.access import changeable
from resolvers.common import Info, load, refused, target_id
from resolvers.customer import Customer
from sources.events.envelope import Event
from sources.sql.merges import UNMERGED, MergeRecord


@strawberry.type(description="How many of each kind of record moved.")
class MergeCounts:
    orders: int = strawberry.field(description="Orders.")
    interactions: int = strawberry.field(description="Timeline interactions.")
    tickets: int = strawberry.field(description="Support tickets.")
    identities: int = strawberry.field(
        description="Profile identities (loyalty number, device id, CRM id, ...)."
    )

    @classmethod
    def of(cls, moved: dict[str, Any]) -> MergeCounts:
        return cls(**{name: len(moved.get(name, [])) for name in domain.MOVED})


@strawberry.type(
    description="One merge of a customer into a survivor: who merged them and when, what moved, "
    "and whether (and by whom) it was undone."
)
class CustomerMerge:
    record: strawberry.Private[MergeRecord]
    id: strawberry.ID = strawberry.field(description="The merge's id, for `unmergeCustomers`.")
    merged_by: str = strawberry.field(description="Who merged the customers.")
    merged_at: dt.datetime = strawberry.field(description="When they were merged.")
    unmerged_by: str | None = strawberry.field(
        description="Who undid the merge; null while it stands."
    )
    unmerged_at: dt.datetime | None = strawberry.field(
        description="When the merge was undone; null while it stands."
    )
    moved: MergeCounts = strawberry.field(
        description="What moved from the merged customer to the survivor."
    )
    returned: MergeCounts | None = strawberry.field(
        description="What went back to the merged customer when the merge was undone (what the "
        "survivor gained since stayed with it); null while the merge stands."
    )

    @strawberry.field(description="The customer that survived the merge.")
    async def survivor(self, info: Info) -> Customer:
        return await _customer(info, self.record.survivor_id)

    @strawberry.field(
        description="The merged customer's own record (status MERGED while the merge stands), "
        "not the survivor that lookups of its id land on."
    )
    async def merged(self, info: Info) -> Customer:
        return await _customer(info, self.record.merged_id)

    @classmethod
    def from_record(cls, record: MergeRecord) -> CustomerMerge:
        returned = record.moved.get("returned") if record.state == UNMERGED else None
        return cls(
            record=record,
            id=strawberry.ID(str(record.id)),
            merged_by=record.merged_by,
            merged_at=record.merged_at,
            unmerged_by=record.unmerged_by,
            unmerged_at=record.unmerged_at,
            moved=MergeCounts.of(record.moved),
            returned=MergeCounts.of(returned) if returned is not None else None,
        )


async def _customer(info: Info, customer_id: int) -> Customer:
    record = await load(info, info.context.loaders.sql.customer_by_id, customer_id)
    assert record is not None  # a merge names existing customers (foreign keys)
    return Customer.from_record(record)


@strawberry.enum(description="Why a merge was refused.")
class MergeCustomersErrorCode(Enum):
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    SAME_CUSTOMER = "SAME_CUSTOMER"
    ALREADY_MERGED = "ALREADY_MERGED"
    MERGE_IN_PROGRESS = "MERGE_IN_PROGRESS"


@strawberry.type(description="The customers were merged.")
class MergeCustomersSuccess:
    merge: CustomerMerge = strawberry.field(description="The merge, with what moved.")
    event_ids: list[strawberry.ID] = strawberry.field(
        description="Ids of the change events (`customer.merged`), one per customer."
    )


@strawberry.type(description="The customers were not merged.")
class MergeCustomersError:
    code: MergeCustomersErrorCode = strawberry.field(description="Why.")
    message: str = strawberry.field(description="What to fix, in words.")
    field: str | None = strawberry.field(description="The argument at fault, if one is.")


MergeCustomersResult = Annotated[
    MergeCustomersSuccess | MergeCustomersError,
    strawberry.union("MergeCustomersResult", description="Merged, or why not."),
]


@strawberry.enum(description="Why an unmerge was refused.")
class UnmergeCustomersErrorCode(Enum):
    MERGE_NOT_FOUND = "MERGE_NOT_FOUND"
    ALREADY_UNMERGED = "ALREADY_UNMERGED"
    SURVIVOR_MERGED = "SURVIVOR_MERGED"
    MERGE_IN_PROGRESS = "MERGE_IN_PROGRESS"


@strawberry.type(description="The merge was undone.")
class UnmergeCustomersSuccess:
    merge: CustomerMerge = strawberry.field(description="The merge, with what went back.")
    event_ids: list[strawberry.ID] = strawberry.field(
        description="Ids of the change events (`customer.unmerged`), one per customer."
    )


@strawberry.type(description="The merge was not undone.")
class UnmergeCustomersError:
    code: UnmergeCustomersErrorCode = strawberry.field(description="Why.")
    message: str = strawberry.field(description="What to fix, in words.")
    field: str | None = strawberry.field(description="The argument at fault, if one is.")


UnmergeCustomersResult = Annotated[
    UnmergeCustomersSuccess | UnmergeCustomersError,
    strawberry.union("UnmergeCustomersResult", description="Undone, or why not."),
]


def _invite_retry(info: Info, error: ChangeRejectedError) -> None:
    """A merge cut short between its steps is finished by a retry: an Idempotency-Key must not
    keep this answer for it."""
    if error.code == "MERGE_IN_PROGRESS":
        info.context.retry_invited = True


def _event_ids(events: list[Event]) -> list[strawberry.ID]:
    return [strawberry.ID(e.id) for e in events]


@strawberry.type(description="Merging two records of one person, and undoing it.")
class MergeMutations:
    @strawberry.mutation(
        description="Merge one customer into another (the survivor): its orders, interactions, "
        "tickets and profile identities move to the survivor, it becomes MERGED, and lookups "
        "of its id, email or identities give the survivor. `unmergeCustomers` undoes it. "
        "Agents and admins only.",
        extensions=[changeable()],
    )
    async def merge_customers(
        self,
        info: Info,
        survivor_id: Annotated[
            strawberry.ID, strawberry.argument(description="The customer that stays.")
        ],
        merged_id: Annotated[
            strawberry.ID,
            strawberry.argument(description="The customer merged into the survivor."),
        ],
    ) -> MergeCustomersResult | None:
        try:
            record, events = await domain.merge_customers(
                info.context.changes,
                survivor_id=target_id(survivor_id),
                merged_id=target_id(merged_id),
                merged_by=info.context.principal.name,
            )
        except ChangeRejectedError as error:
            _invite_retry(info, error)
            return refused(MergeCustomersError, MergeCustomersErrorCode, error)
        return MergeCustomersSuccess(
            merge=CustomerMerge.from_record(record), event_ids=_event_ids(events)
        )

    @strawberry.mutation(
        description="Undo a merge: both customers as they were before it, except that what "
        "reached the survivor since (a new order, interaction, ticket or identity) stays with "
        "the survivor. Agents and admins only.",
        extensions=[changeable()],
    )
    async def unmerge_customers(
        self,
        info: Info,
        merge_id: Annotated[
            strawberry.ID, strawberry.argument(description="The merge to undo: `CustomerMerge.id`.")
        ],
    ) -> UnmergeCustomersResult | None:
        try:
            record, events = await domain.unmerge_customers(
                info.context.changes,
                merge_id=target_id(merge_id),
                unmerged_by=info.context.principal.name,
            )
        except ChangeRejectedError as error:
            _invite_retry(info, error)
            return refused(UnmergeCustomersError, UnmergeCustomersErrorCode, error)
        return UnmergeCustomersSuccess(
            merge=CustomerMerge.from_record(record), event_ids=_event_ids(events)
        )
