"""The engagement store's changes: consents and the interaction timeline."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from domain.changes import (
    Changes,
    change_event,
    mongo_transaction,
    require_customer,
)
from domain.errors import (
    ChangeRejectedError,
)
from sources.events.envelope import Event
from sources.mongo import loaders as mongo_loaders
from sources.roundtrips import MONGO

log = logging.getLogger(__name__)


CONSENT_CHANNELS = frozenset({"EMAIL", "SMS", "PHONE", "PUSH", "POST"})


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


async def record_interaction(
    changes: Changes,
    *,
    customer_id: int,
    interaction: dict[str, Any],
    origin: Event | None = None,
) -> Event:
    """Append an interaction to the customer's timeline."""
    customer_id = (await require_customer(changes, customer_id, origin)).id
    interaction = {**interaction, "customer_id": customer_id}
    data = {
        "type": interaction["type"],
        "channel": interaction["channel"],
        "occurred_at": interaction["occurred_at"].isoformat(),
    }
    event = change_event(
        "interaction.recorded", customer_id, data, interaction["occurred_at"], origin
    )
    db = changes.db

    async def write(session: Any) -> None:
        await db.interactions.insert_one(interaction, session=session)

    await mongo_transaction(changes, event, write)
    await changes.invalidate(MONGO, mongo_loaders.TIMELINE_PAGE, owners=[customer_id])
    changes.published()
    return event
