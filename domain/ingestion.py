"""Ingestion: upstream events in; each one applied, a duplicate, or a dead letter.

`Ingestion.ingest(items)` is the whole pipeline, apart from any transport: `POST /events`
calls it with the items of one request, and a broker consumer would call it with a batch of
messages. Every item is validated against the schema registry; a valid one becomes an
`Event` and is applied, in the order received per subject (the customer: the unit of an
event's ordering), different subjects' events at the same time. Items that are invalid or
cannot apply (`ChangeRejectedError`: an unknown customer, an order that is not the
subject's) are rejected and kept in the dead-letter store with their reasons; an event whose
id was applied before is a duplicate (delivery is at least once, so a retry is not an error).

Events of the grouped types (`Grouped`: those that record an interaction, the high-volume
kind) are applied together: each subject's consecutive run of them joins the runs the other
subjects reach at the same time, and all are written in one transaction per store instead of
one per event (a merged customer's events go to its survivor, as they do one by one). A run
that cannot go with the group (no customer has its subject's id, or the group's transaction
failed) is applied event by event, with the same outcome as if it had never been grouped.
Grouping happens only while the MongoDB outbox's unique index on event ids is in place
(`sources.events.outbox.UniqueIds`): it is what applies an id once across groups.

A store failure while applying stops that subject at the failed event (its later events must
not overtake it) and fails the whole call with `ApplyFailedError` once the other subjects are
done; nothing is dead-lettered then, so retrying the whole batch is safe: what was applied
comes back as duplicates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.errors import ChangeRejectedError
from sources import tracing
from sources.events.cloudevents import Item, Malformed
from sources.events.deadletters import Rejection, record_dead_letters
from sources.events.envelope import Event
from sources.events.registry import SchemaRegistry
from sources.sql.engine import begin_write

log = logging.getLogger(__name__)

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"

# Subjects whose events are applied one by one at the same time, at most.
APPLY_CONCURRENCY = 16
# The joint writes running (the loop keeps only a weak reference to a task).
_WRITING: set[asyncio.Future[None]] = set()

# Applies one event: True when applied, False when its id was applied before.
Apply = Callable[[Event], Awaitable[bool]]
# Applies runs of events of several subjects at once: per run, per event True or False, or
# None for a run to apply event by event.
ApplyRuns = Callable[[Sequence[Sequence[Event]]], Awaitable[list[list[bool] | None]]]
KeepDeadLetters = Callable[[Sequence[Rejection]], Awaitable[None]]


class ApplyFailedError(Exception):
    """A store failed while applying; nothing was dead-lettered, and a retry is safe."""


class DeadLettersUnavailableError(Exception):
    """The events were applied, but the rejected ones could not be kept."""


@dataclass(slots=True)
class Result:
    """One item's fate; `index` is its place in the batch, `id` its event id when it had one."""

    index: int
    id: str | None
    status: str
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "status": self.status, "reasons": self.reasons}


@dataclass(frozen=True, slots=True)
class Grouped:
    """Event types applied many subjects' at once, and how."""

    types: frozenset[str]
    apply: ApplyRuns


@dataclass(slots=True)
class _Entry:
    result: Result
    item: dict[str, Any]
    event: Event


async def keep_in_sql(engine: AsyncEngine, rejections: Sequence[Rejection]) -> None:
    """Keep rejected items in the SQL dead-letter store, in one transaction."""
    if not rejections:
        return
    try:
        async with begin_write(engine) as connection:
            await record_dead_letters(connection=connection, items=rejections)
    except (SQLAlchemyError, OSError) as error:
        log.exception("could not record %d dead letters", len(rejections))
        raise DeadLettersUnavailableError(str(error)) from error


@dataclass(frozen=True, slots=True)
class Ingestion:
    """The pipeline: validate with `registry`, apply with `apply` (and `grouped`), keep the
    rejected with `keep`."""

    registry: SchemaRegistry
    apply: Apply
    keep: KeepDeadLetters
    grouped: Grouped | None = None

    def applying(self, apply: Apply) -> Ingestion:
        """This pipeline with every event applied by `apply`, one by one."""
        return dataclasses.replace(self, apply=apply, grouped=None)

    async def ingest(self, items: Sequence[Item]) -> list[Result]:
        """Each item's result, in the order given; raises ApplyFailedError or
        DeadLettersUnavailableError as the module says."""
        with tracing.span("ingest", {tracing.EVENTS: len(items)}):
            return await self._ingest(items)

    async def _ingest(self, items: Sequence[Item]) -> list[Result]:
        results: list[Result] = []
        rejections: list[tuple[int, Rejection]] = []
        subjects: dict[str, list[_Entry]] = {}
        for index, item in enumerate(items):
            if isinstance(item, Malformed):
                reasons, payload, event_id = [item.reason], item.payload, None
            else:
                reasons, payload, event_id = self.registry.validate(item), item, item.get("id")
            result = Result(index, event_id if isinstance(event_id, str) else None, ACCEPTED)
            results.append(result)
            if reasons:
                result.status, result.reasons = REJECTED, reasons
                rejections.append((index, Rejection(payload=payload, reasons=reasons)))
            else:
                assert isinstance(item, dict)
                event = Event.from_json(item)
                subjects.setdefault(event.subject, []).append(_Entry(result, item, event))

        run = _Run(self, rejections)
        outcomes = await asyncio.gather(*(run.subject(e) for e in subjects.values()))
        if not all(outcomes):
            raise ApplyFailedError("applying the events failed: retry the batch")
        await self.keep([rejection for _, rejection in sorted(rejections, key=lambda r: r[0])])
        return results


class _Run:
    """One `ingest` call's application: its subjects' sequences, the one-by-one slots, and
    the group being gathered for the next joint write."""

    def __init__(self, ingestion: Ingestion, rejections: list[tuple[int, Rejection]]) -> None:
        self.ingestion = ingestion
        self.rejections = rejections
        self.slots = asyncio.Semaphore(APPLY_CONCURRENCY)
        self.gathering: list[tuple[list[_Entry], asyncio.Future[list[bool] | None]]] = []

    async def subject(self, entries: list[_Entry]) -> bool:
        """Apply one subject's entries in order; False when a store failed."""
        grouped = self.ingestion.grouped
        position = 0
        while position < len(entries):
            if grouped is None or entries[position].event.type not in grouped.types:
                if not await self.one(entries[position]):
                    return False
                position += 1
                continue
            end = position
            while end < len(entries) and entries[end].event.type in grouped.types:
                end += 1
            segment = entries[position:end]
            fates = await self.together(segment)
            if fates is None:
                for entry in segment:
                    if not await self.one(entry):
                        return False
            else:
                for entry, applied in zip(segment, fates, strict=True):
                    if not applied:
                        entry.result.status = DUPLICATE
            position = end
        return True

    async def one(self, entry: _Entry) -> bool:
        """Apply one event on its own; False when a store failed."""
        result = entry.result
        async with self.slots:
            try:
                applied = await self.ingestion.apply(entry.event)
            except ChangeRejectedError as error:
                # Valid, but it cannot apply: sending it again would not help, so it is a
                # dead letter too.
                result.status = REJECTED
                result.reasons = [f"cannot be applied: {error} ({error.code})"]
                self.rejections.append((result.index, Rejection(entry.item, result.reasons)))
                return True
            except Exception:
                log.exception("applying event %s (%s) failed", entry.event.id, entry.event.type)
                return False
        if not applied:
            result.status = DUPLICATE
        return True

    async def together(self, segment: list[_Entry]) -> list[bool] | None:
        """The fates of one subject's run in the group written next (None: apply it one by
        one). The group is written once every subject that reaches a run now has joined."""
        future: asyncio.Future[list[bool] | None] = asyncio.get_running_loop().create_future()
        if not self.gathering:
            # After the other subjects' current steps: they join before the write starts.
            asyncio.get_running_loop().call_soon(self._write_group)
        self.gathering.append((segment, future))
        return await future

    def _write_group(self) -> None:
        group, self.gathering = self.gathering, []
        task = asyncio.ensure_future(self._write(group))
        # Held until done, even when the call that started it is given up on: cancelled in
        # the middle of a commit, a write could leave its transaction open on the server, or
        # its cache entries not invalidated. It ends within the stores' timeouts.
        _WRITING.add(task)
        task.add_done_callback(_WRITING.discard)

    async def _write(
        self, group: list[tuple[list[_Entry], asyncio.Future[list[bool] | None]]]
    ) -> None:
        grouped = self.ingestion.grouped
        assert grouped is not None
        fates: list[list[bool] | None] = [None] * len(group)
        try:
            # A joint write holds a slot too: it takes a connection per store.
            async with self.slots:
                fates = await grouped.apply([[entry.event for entry in run] for run, _ in group])
        except Exception:
            log.warning("applying %d runs of events at once failed", len(group), exc_info=True)
        finally:
            # Even when cancelled: no subject may wait for ever.
            for (_, future), fate in zip(group, fates, strict=True):
                if not future.done():
                    future.set_result(fate)
