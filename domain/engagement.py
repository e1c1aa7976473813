"""The engagement store's changes: consents and the interaction timeline."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from domain import vocabulary
from domain.changes import (
    Changes,
    change_event,
    duplicate_key,
    mongo_transaction,
    require_customer,
    survivors,
)
from domain.errors import ChangeRejectedError
from sources.events.envelope import Event
from sources.events.outbox import add_to_mongo_outbox, in_mongo_outbox
from sources.mongo import loaders as mongo_loaders
from sources.mongo.queries import Database
from sources.mongo.source import MONGO
from sources.sql.records import CustomerRecord

log = logging.getLogger(__name__)


CONSENT_CHANNELS = frozenset(vocabulary.CONSENT_CHANNELS)


async def change_consent(
    changes: Changes,
    *,
    customer_id: int,
    channel: str,
    granted: bool,
    origin: Event | None = None,
) -> Event:
    """Grant or withdraw the customer's consent for one channel."""
    if channel not in CONSENT_CHANNELS:
        raise ChangeRejectedError(
            "INVALID_CHANNEL", f"unknown consent channel {channel!r}", "channel"
        )
    customer_id = (await require_customer(changes, customer_id, origin)).id
    at = dt.datetime.now(dt.UTC)
    data = {"channel": channel, "granted": granted}
    event = change_event("consent.changed", customer_id, data, at, origin)
    db = changes.db

    async def write(session: Any) -> None:
        profile = await db.profiles.find_one({"_id": customer_id}, session=session)
        consents = [c for c in (profile or {}).get("consents", []) if c["channel"] != channel]
        consents.append({"channel": channel, "granted": granted, "updated_at": at})
        await db.profiles.update_one(
            {"_id": customer_id}, {"$set": {"consents": consents}}, upsert=True, session=session
        )

    await mongo_transaction(changes, event, write)
    await changes.invalidate(MONGO, mongo_loaders.PROFILE, keys=[customer_id])
    changes.published()
    return event


def _recorded(
    interaction: dict[str, Any], customer_id: int, origin: Event | None
) -> tuple[dict[str, Any], Event]:
    """The interaction as kept on the customer's timeline, and its change event."""
    interaction = {**interaction, "customer_id": customer_id}
    data = {
        "type": interaction["type"],
        "channel": interaction["channel"],
        "occurred_at": interaction["occurred_at"].isoformat(),
    }
    event = change_event(
        "interaction.recorded", customer_id, data, interaction["occurred_at"], origin
    )
    return interaction, event


async def record_interaction(
    changes: Changes,
    *,
    customer_id: int,
    interaction: dict[str, Any],
    origin: Event | None = None,
) -> Event:
    """Append an interaction to the customer's timeline."""
    customer_id = (await require_customer(changes, customer_id, origin)).id
    interaction, event = _recorded(interaction, customer_id, origin)
    db = changes.db

    async def write(session: Any) -> None:
        await db.interactions.insert_one(interaction, session=session)

    await mongo_transaction(changes, event, write)
    await changes.invalidate(MONGO, mongo_loaders.TIMELINE_PAGE, owners=[customer_id])
    changes.published()
    return event


# One upstream event and the interaction it records (its `customer_id` still to be found).
Recording = tuple[Event, dict[str, Any]]


async def record_interactions(
    changes: Changes, runs: Sequence[Sequence[Recording]]
) -> list[list[bool] | None]:
    """Append the interactions of many upstream events, each run one subject's events in
    order, in one MongoDB transaction with all their outbox documents (and one SQL query to
    find the customers), where `record_interaction` takes a transaction per event.

    Answers per run: per event True (recorded) or False (its id was applied before, or
    earlier in these runs), or None for a run left to `record_interaction`, event by event:
    its subject is not a customer that takes changes (that call refuses it with the reason),
    or the transaction failed otherwise than on ids applied before, or was refused twice (a
    delivery of the same ids at that very moment, say), in which case every run is left.
    So a run is recorded whole or not at all, and one subject's events keep their order
    either way.

    Ids applied before are looked for only when the write finds one (the outbox's unique
    index refuses it): a batch delivered once, the usual case, costs no lookup.
    """
    subjects = {int(event.subject) for run in runs for event, _ in run}
    customers = await survivors(changes, sorted(subjects))
    db = changes.db
    applied: set[str] = set()
    for looked in (False, True):
        answers, interactions, events = _fresh(runs, customers, applied)
        if not events:
            return answers

        try:
            await _write_together(db, interactions, events)
            break
        except (DuplicateKeyError, BulkWriteError) as error:
            if not duplicate_key(error):
                return _one_by_one(runs, len(events), error)
            if looked:
                # Another delivery of these ids committed between the look and this write:
                # an ordinary race, which one by one settles.
                log.info("a group of interactions met another delivery: recording one by one")
                return [None] * len(runs)
        except PyMongoError as error:
            return _one_by_one(runs, len(events), error)
        try:
            applied = await in_mongo_outbox(db=db, event_ids=[e.id for e in events])
        except PyMongoError as error:
            return _one_by_one(runs, len(events), error)
    owners = sorted({int(event.subject) for event in events})
    await changes.invalidate(MONGO, mongo_loaders.TIMELINE_PAGE, owners=owners)
    changes.published()
    return answers


async def _write_together(
    db: Database, interactions: list[dict[str, Any]], events: list[Event]
) -> None:
    """The interactions and their outbox documents, in one transaction."""

    async def write(session: Any) -> None:
        # The outbox first: an id applied before fails the write before the events are sent.
        await add_to_mongo_outbox(db=db, session=session, events=events)
        await db.interactions.insert_many(interactions, session=session)

    async with db.client.start_session() as session:
        # with_transaction runs `write` again on a transient conflict.
        await session.with_transaction(write)


def _fresh(
    runs: Sequence[Sequence[Recording]],
    customers: Mapping[int, CustomerRecord | None],
    applied: set[str],
) -> tuple[list[list[bool] | None], list[dict[str, Any]], list[Event]]:
    """Each run's answer, and the interactions and change events of the events to record:
    those of runs whose subject takes changes, but for ids in `applied` or seen earlier."""
    seen = set(applied)
    answers: list[list[bool] | None] = []
    interactions: list[dict[str, Any]] = []
    events: list[Event] = []
    for run in runs:
        customer = customers.get(int(run[0][0].subject))
        if customer is None or customer.merged_into is not None:
            answers.append(None)
            continue
        fates: list[bool] = []
        for origin, interaction in run:
            fresh = origin.id not in seen
            fates.append(fresh)
            if fresh:
                seen.add(origin.id)
                recorded, event = _recorded(interaction, customer.id, origin)
                interactions.append(recorded)
                events.append(event)
        answers.append(fates)
    return answers, interactions, events


def _one_by_one(
    runs: Sequence[Sequence[Recording]], count: int, error: Exception
) -> list[list[bool] | None]:
    log.warning(
        "recording %d interactions at once failed: recording them one by one",
        count,
        exc_info=error,
    )
    return [None] * len(runs)
