"""Support tickets: opened by agents, moved through their statuses by agents and upstream."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pymongo.errors import PyMongoError

from domain import vocabulary
from domain.changes import (
    Changes,
    change_event,
    mongo_transaction,
    require_customer,
)
from domain.errors import (
    ChangeRejectedError,
    not_the_subjects,
)
from sources.events.envelope import Event
from sources.loader import outages_as_source_errors
from sources.mongo import loaders as mongo_loaders
from sources.mongo.source import MONGO

TICKET_STATUSES = frozenset(vocabulary.TICKET_STATUSES)


async def change_ticket_status(
    changes: Changes,
    *,
    customer_id: int | None,
    ticket_id: str,
    status: str,
    assignee: str | None = None,
    eta: dt.datetime | None = None,
    note: str | None = None,
    origin: Event | None = None,
) -> Event:
    """Move a ticket to a status.

    With a `customer_id` (an upstream event's subject), the ticket must be that customer's (or
    its survivor's), and a ticket c360 has not seen is opened for it; without one (a mutation),
    the ticket must exist and its customer is its owner.
    """
    if status not in TICKET_STATUSES:
        raise ChangeRejectedError("INVALID_STATUS", f"unknown ticket status {status!r}", "status")
    subject = customer_id
    if customer_id is None:
        with outages_as_source_errors("mongo", "a change", (PyMongoError,)):
            ticket = await changes.db.tickets.find_one({"_id": ticket_id}, {"customer_id": 1})
        if ticket is None:
            raise ChangeRejectedError(
                "TICKET_NOT_FOUND", f"no ticket has id {ticket_id}", "ticketId"
            )
        customer_id = int(ticket["customer_id"])
    else:
        customer_id = (await require_customer(changes, customer_id, origin)).id
    at = dt.datetime.now(dt.UTC)
    data: dict[str, Any] = {"ticket_id": ticket_id, "status": status}
    if assignee:
        data["assignee"] = assignee
    if eta:
        data["eta"] = eta.isoformat()
    event = change_event("ticket.status_changed", customer_id, data, at, origin)
    db = changes.db

    async def write(session: Any) -> None:
        if subject is not None:
            # Read in the transaction that writes it: a merge moving the ticket meanwhile
            # conflicts with this transaction, which then runs again and reads it anew.
            found = await db.tickets.find_one(
                {"_id": ticket_id}, {"customer_id": 1}, session=session
            )
            if found is not None and int(found["customer_id"]) != customer_id:
                raise not_the_subjects("ticket", ticket_id, subject, "ticketId")
        update: dict[str, Any] = {"status": status, "updated_at": at}
        if assignee is not None:
            update["assignee"] = assignee
        if eta is not None:
            update["eta"] = eta
        await db.tickets.update_one(
            {"_id": ticket_id},
            {
                "$set": update,
                "$push": {"history": {"at": at, "status": status, "note": note}},
                "$setOnInsert": {
                    "customer_id": customer_id,
                    "subject": note or "Ticket",
                    "priority": "NORMAL",
                    "channel": "PHONE",
                    "created_at": at,
                },
            },
            upsert=True,
            session=session,
        )

    await mongo_transaction(changes, event, write)
    await changes.invalidate(MONGO, mongo_loaders.TICKETS, owners=[customer_id])
    changes.published()
    return event


async def open_ticket(
    changes: Changes,
    *,
    customer_id: int,
    subject: str,
    priority: str,
    channel: str,
) -> tuple[str, Event]:
    """Open a support ticket for the customer; returns its id and the event."""
    if not subject.strip():
        raise ChangeRejectedError("INVALID_SUBJECT", "subject must not be empty", "subject")
    await require_customer(changes, customer_id)
    at = dt.datetime.now(dt.UTC)
    ticket_id = f"T-{uuid.uuid4().hex[:10].upper()}"
    data = {"ticket_id": ticket_id, "status": "OPEN"}
    event = change_event("ticket.status_changed", customer_id, data, at, None)
    db = changes.db

    async def write(session: Any) -> None:
        await db.tickets.insert_one(
            {
                "_id": ticket_id,
                "customer_id": customer_id,
                "subject": subject.strip(),
                "status": "OPEN",
                "priority": priority,
                "channel": channel,
                "assignee": None,
                "eta": None,
                "created_at": at,
                "updated_at": at,
                "history": [{"at": at, "status": "OPEN", "note": "Ticket opened"}],
            },
            session=session,
        )

    await mongo_transaction(changes, event, write)
    await changes.invalidate(MONGO, mongo_loaders.TICKETS, owners=[customer_id])
    changes.published()
    return ticket_id, event
