"""Changes to a customer's record: contact details and addresses."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from domain import vocabulary
from domain.changes import (
    Changes,
    change_event,
    lock_customer,
    sql_transaction,
)
from domain.errors import ChangeRejectedError
from sources.events.envelope import Event
from sources.events.outbox import add_to_sql_outbox
from sources.sql import loaders as sql_loaders
from sources.sql import writes
from sources.sql.records import CustomerRecord
from sources.sql.search import Searchable, write_search_terms
from sources.sql.source import SQL

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
ADDRESS_KINDS = frozenset(vocabulary.ADDRESS_KINDS)


def normalise_email(email: str) -> str:
    """Emails compare case- and whitespace-insensitively."""
    return email.strip().lower()


async def change_contact(
    changes: Changes,
    *,
    customer_id: int,
    email: str | None = None,
    phone: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    origin: Event | None = None,
) -> tuple[CustomerRecord, Event]:
    """Change a customer's contact details and name."""
    values: dict[str, Any] = {}
    if email is not None:
        email = normalise_email(email)
        if not EMAIL.match(email):
            raise ChangeRejectedError(
                "INVALID_EMAIL", f"{email!r} is not an email address", "email"
            )
        values["email"] = email
    if phone is not None:
        phone = re.sub(r"[\s().-]", "", phone)
        if not E164.match(phone):
            raise ChangeRejectedError(
                "INVALID_PHONE", "phone must be in E.164 form, like +442071838750", "phone"
            )
        values["phone"] = phone
    for name, value in (("first_name", first_name), ("last_name", last_name)):
        if value is not None:
            if not value.strip():
                raise ChangeRejectedError("INVALID_NAME", f"{name} must not be empty", name)
            values[name] = value.strip()
    if not values:
        raise ChangeRejectedError("NOTHING_TO_CHANGE", "give at least one field to change")
    at = dt.datetime.now(dt.UTC)
    async with sql_transaction(changes, origin) as connection:
        # Never redirected to a survivor, even from upstream: the merged record keeps its own
        # email (unique), and which of two records' contact details the person keeps is a
        # person's choice, not the last event's.
        await lock_customer(connection, customer_id)
        if "email" in values:
            owner = await writes.email_owner(connection=connection, email=values["email"])
            if owner not in (None, customer_id):
                raise ChangeRejectedError(
                    "EMAIL_TAKEN", "another customer uses that email", "email"
                )
        record = await writes.update_customer(
            connection=connection, customer_id=customer_id, values=values, at=at
        )
        # Every contact field is searchable: the terms change in the same transaction.
        await write_search_terms(connection=connection, customers=[Searchable.of(record)])
        event = change_event("customer.contact_changed", customer_id, values, at, origin)
        await add_to_sql_outbox(connection=connection, events=[event])
    await changes.invalidate(SQL, sql_loaders.CUSTOMER, keys=[customer_id])
    changes.published()
    return record, event


def _check_address(values: dict[str, Any]) -> None:
    if values["kind"] not in ADDRESS_KINDS:
        raise ChangeRejectedError(
            "INVALID_ADDRESS", "kind must be HOME, BILLING or SHIPPING", "kind"
        )
    for required in ("line1", "city", "postal_code"):
        if not str(values.get(required) or "").strip():
            raise ChangeRejectedError("INVALID_ADDRESS", f"{required} must not be empty", required)
    country = str(values.get("country") or "")
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise ChangeRejectedError(
            "INVALID_ADDRESS", "country must be an ISO 3166-1 alpha-2 code, like GB", "country"
        )


async def change_address(
    changes: Changes, *, customer_id: int, address: dict[str, Any], origin: Event | None = None
) -> Event:
    """Set the customer's address of one kind (add it, or replace the one there is)."""
    fields = ("kind", "line1", "line2", "city", "region", "postal_code", "country")
    values = {f: address.get(f) for f in fields}
    _check_address(values)
    at = dt.datetime.now(dt.UTC)
    async with sql_transaction(changes, origin) as connection:
        customer_id = (await lock_customer(connection, customer_id, origin)).id
        await writes.upsert_address(
            connection=connection, customer_id=customer_id, values=values, at=at
        )
        event = change_event("customer.address_changed", customer_id, values, at, origin)
        await add_to_sql_outbox(connection=connection, events=[event])
    await changes.invalidate(SQL, sql_loaders.ADDRESSES, keys=[customer_id])
    changes.published()
    return event


async def remove_address(
    changes: Changes, *, customer_id: int, kind: str, origin: Event | None = None
) -> Event:
    """Remove the customer's address of one kind."""
    at = dt.datetime.now(dt.UTC)
    async with sql_transaction(changes, origin) as connection:
        customer_id = (await lock_customer(connection, customer_id, origin)).id
        if not await writes.delete_address(
            connection=connection, customer_id=customer_id, kind=kind
        ):
            raise ChangeRejectedError(
                "ADDRESS_NOT_FOUND", f"the customer has no {kind} address", "kind"
            )
        data = {"kind": kind, "removed": True}
        event = change_event("customer.address_changed", customer_id, data, at, origin)
        await add_to_sql_outbox(connection=connection, events=[event])
    await changes.invalidate(SQL, sql_loaders.ADDRESSES, keys=[customer_id])
    changes.published()
    return event
