"""Changes to customer data, end to end: validate, write with the event in one transaction,
invalidate the cache, and wake the relay. Mutations and ingested upstream events both come
here, so a change means the same thing whoever makes it.

An event id is the idempotency key: applying an event whose id is already in an outbox
changes nothing (the outbox's unique id refuses it inside the same transaction).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sources.cache.backends import CacheUnavailableError
from sources.cache.entity import EntityCache
from sources.events.envelope import C360_SOURCE, Event
from sources.events.outbox import (
    TRANSACTION_ID,
    Relay,
    add_to_mongo_outbox,
    add_to_sql_outbox,
    in_sql_outbox,
)
from sources.loader import outages_as_source_errors
from sources.mongo import idempotency as mongo_idempotency
from sources.mongo.queries import Database
from sources.sql import idempotency, writes
from sources.sql.engine import SQL_ERRORS, one_writer
from sources.sql.queries import customers_by_ids, orders_by_ids
from sources.sql.records import CustomerRecord, OrderRecord
from sources.sql.search import Searchable, write_search_terms

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# Where an order may go from each status.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "PLACED": frozenset({"PAID", "CANCELLED"}),
    "PAID": frozenset({"FULFILLING", "CANCELLED"}),
    "FULFILLING": frozenset({"SHIPPED", "CANCELLED"}),
    "SHIPPED": frozenset({"DELIVERED", "RETURNED"}),
    "DELIVERED": frozenset({"RETURNED"}),
    "CANCELLED": frozenset(),
    "RETURNED": frozenset(),
}
CONSENT_CHANNELS = frozenset({"EMAIL", "SMS", "PHONE", "PUSH", "POST"})

log = logging.getLogger(__name__)


class ChangeRejectedError(Exception):
    """A change that cannot be made as asked; `code` says why, `field` names the culprit."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class DuplicateEventError(Exception):
    """The event was applied before (its id is already in an outbox)."""


@dataclass(frozen=True)
class Changes:
    """What a change needs: the stores, the cache to invalidate, the relay to wake."""

    engine: AsyncEngine
    db: Database
    cache: EntityCache | None
    relay: Relay | None
    # The Idempotency-Key the request making these changes holds: each change marks it
    # applied in its own transaction (`sources.sql.idempotency`).
    claim: idempotency.Claim | None = None

    def holding(self, claim: idempotency.Claim | None) -> Changes:
        """These changes, made under a request's idempotency key."""
        return self if claim is None else replace(self, claim=claim)

    async def _invalidate(
        self, source: str, name: str, *, keys: Sequence[Any] = (), owners: Sequence[Any] = ()
    ) -> None:
        if self.cache is None:
            return
        try:
            await self.cache.invalidate(source, name, keys=keys, owners=owners)
        except CacheUnavailableError:
            # Kept and replayed before the cache is read again (see RedisBackend).
            pass
        except Exception:
            # The change committed: nothing after the commit may report it as failed. The
            # entries expire with their TTL, and the change's event invalidates them again.
            log.exception("invalidating %s %s after a committed change failed", source, name)

    def _published(self) -> None:
        if self.relay is not None:
            self.relay.wake()


def _event(
    type: str, subject: int, data: dict[str, Any], at: dt.datetime, origin: Event | None
) -> Event:
    """The c360 change event; for an ingested event it keeps the upstream id (idempotency)."""
    return Event(
        id=origin.id if origin else str(uuid.uuid4()),
        source=C360_SOURCE,
        type=type,
        subject=str(subject),
        time=at,
        data=data,
        extensions={"origin": origin.source} if origin else {},
    )


@contextlib.asynccontextmanager
async def _sql_transaction(
    changes: Changes, origin: Event | None
) -> AsyncIterator[AsyncConnection]:
    """A write transaction; an ingested event seen before fails it as DuplicateEventError, a
    lost connection as SourceUnavailableError, unless the change is found to have committed.

    The transaction marks the request's idempotency key applied (see `Changes.claim`).
    """
    try:
        with outages_as_source_errors("sql", "a change", SQL_ERRORS):
            async with one_writer(changes.engine), changes.engine.connect() as connection:
                transaction = await connection.begin()
                # `info` outlives this checkout: an id noted by an earlier transaction is not
                # this one's.
                connection.info.pop(TRANSACTION_ID, None)
                try:
                    yield connection
                    if changes.claim is not None:
                        await idempotency.mark_applied(connection=connection, claim=changes.claim)
                    xid = await _transaction_id(connection)
                except BaseException:
                    # On a lost connection the rollback fails too: the error to report is the
                    # first one.
                    with contextlib.suppress(*SQL_ERRORS):
                        await transaction.rollback()
                    raise
                try:
                    await transaction.commit()
                except SQL_ERRORS:
                    if xid is None or not await _committed(changes.engine, xid):
                        raise
                    log.warning("the connection was lost during a COMMIT that took effect")
    except IntegrityError as error:
        if origin is not None and "outbox" in str(error.orig).lower():
            raise DuplicateEventError(origin.id) from error
        raise


async def _transaction_id(connection: AsyncConnection) -> str | None:
    """PostgreSQL's id of the running transaction, to ask after a lost COMMIT whether it
    committed (SQLite is a local file: a COMMIT there has no outcome to lose)."""
    if connection.dialect.name != "postgresql":
        return None
    noted = connection.info.pop(TRANSACTION_ID, None)
    if noted is not None:
        return str(noted)
    # A transaction that queued no event (a merge's first step) asks for it.
    return str((await connection.execute(text("SELECT pg_current_xact_id()::text"))).scalar())


async def _committed(engine: AsyncEngine, xid: str) -> bool:
    """Whether the transaction `xid` committed, asked on a fresh connection (twice, as the
    loss that cut the COMMIT may take the next connection too); False when that cannot be
    known (the change is then reported as not made, which may be untrue: the Idempotency-Key
    is what makes such a retry safe)."""
    for _ in range(2):
        try:
            async with engine.connect() as connection:
                status = await connection.execute(
                    text("SELECT pg_xact_status(CAST(:xid AS xid8))"), {"xid": xid}
                )
                return status.scalar() == "committed"
        except SQL_ERRORS:
            continue
    return False


async def _mongo_transaction(
    changes: Changes, event: Event, write: Callable[[Any], Awaitable[None]]
) -> None:
    """`write(session)` and the event's outbox document in one MongoDB transaction, with the
    marker of the request's idempotency key (a second change under the key fails the
    transaction)."""
    claim = changes.claim

    async def transaction(session: Any) -> None:
        if claim is not None and not await mongo_idempotency.mark_applied(
            db=changes.db, session=session, marker=claim.marker, expires_at=claim.expires_at
        ):
            raise idempotency.already_applied()
        await write(session)
        await add_to_mongo_outbox(db=changes.db, session=session, events=[event])

    try:
        with outages_as_source_errors("mongo", "a change", (PyMongoError,)):
            if claim is not None:
                await mongo_idempotency.sweep_expired(db=changes.db)
            async with changes.db.client.start_session() as session:
                # with_transaction retries on TransientTransactionError: concurrent
                # transactions touching the same documents (the outbox, one customer's
                # profile) conflict.
                await session.with_transaction(transaction)
    except (DuplicateKeyError, BulkWriteError) as error:
        if event.extensions.get("origin") is not None and _duplicate_key(error):
            raise DuplicateEventError(event.id) from error
        raise
    if claim is not None:
        try:
            await idempotency.applied(engine=changes.engine, claim=claim)
        except SQL_ERRORS:
            # The MongoDB marker, committed with the change, still refuses a second one.
            log.warning("could not mark idempotency key applied in SQL", exc_info=True)


def _duplicate_key(error: DuplicateKeyError | BulkWriteError) -> bool:
    if isinstance(error, DuplicateKeyError):
        return True
    return any(e.get("code") == 11000 for e in error.details.get("writeErrors", []))


def _no_such_customer(customer_id: int) -> ChangeRejectedError:
    return ChangeRejectedError(
        "CUSTOMER_NOT_FOUND", f"no customer has id {customer_id}", "customerId"
    )


def _merged(customer: CustomerRecord) -> ChangeRejectedError:
    # The survivor is not named: to a customer principal it is another person's record (staff
    # read it in `mergedInto`).
    return ChangeRejectedError(
        "CUSTOMER_MERGED",
        f"customer {customer.id} was merged into another customer: make the change on the "
        "survivor (its `mergedInto`)",
        "customerId",
    )


async def _read_customer(
    connection: AsyncConnection, customer_id: int, *, follow_merges: bool
) -> CustomerRecord | None:
    """The customer of an id, unlocked; with `follow_merges`, the survivor of its merges."""
    [customer] = await customers_by_ids(connection=connection, ids=[customer_id])
    seen: set[int] = set()
    while follow_merges and customer is not None and customer.merged_into is not None:
        if customer.id in seen:
            break
        seen.add(customer.id)
        [customer] = await customers_by_ids(connection=connection, ids=[customer.merged_into])
    return customer


async def _lock_customer(
    connection: AsyncConnection, customer_id: int, origin: Event | None = None
) -> CustomerRecord:
    """The customer to change, locked for this transaction (see `writes.lock_customer`), or
    rejected.

    A merged customer is never changed. An upstream event about one (its system still knows
    the old id, as lookups do) changes the survivor instead; a change a client asks for is
    refused with CUSTOMER_MERGED, naming the survivor, so no client's change lands on a
    record it did not name. The survivor is found before the lock, so this never holds a
    merged customer's lock while waiting for its survivor's (merges lock in id order).
    """
    target = customer_id
    if origin is not None:
        survivor = await _read_customer(connection, customer_id, follow_merges=True)
        target = survivor.id if survivor is not None else customer_id
    customer = await writes.lock_customer(connection=connection, customer_id=target)
    if customer is None:
        raise _no_such_customer(customer_id)
    if customer.merged_into is not None:
        # Named by a client, or merged between the read above and the lock.
        raise _merged(customer)
    return customer


async def _require_customer(
    changes: Changes, customer_id: int, origin: Event | None = None
) -> CustomerRecord:
    """The customer to change in MongoDB, by `_lock_customer`'s rules (without a lock)."""
    with outages_as_source_errors("sql", "a change", SQL_ERRORS):
        async with changes.engine.connect() as connection:
            customer = await _read_customer(
                connection, customer_id, follow_merges=origin is not None
            )
    if customer is None:
        raise _no_such_customer(customer_id)
    if customer.merged_into is not None:
        raise _merged(customer)
    return customer


def _not_the_subjects(entity: str, name: str, subject: int, field: str) -> ChangeRejectedError:
    # The owner goes unnamed: which customer holds the entity is not the publisher's to learn.
    return ChangeRejectedError(
        f"{entity.upper()}_OF_ANOTHER_CUSTOMER",
        f"{entity} {name} does not belong to customer {subject}, the event's subject",
        field,
    )


async def _require_subjects(
    connection: AsyncConnection, subject: int, owner: int, entity: str, name: str, field: str
) -> None:
    """Refuse unless `owner`, the customer holding (and locked for) the entity an event names,
    is the event's subject or, after merges, the subject's survivor.

    The subject is the unit of an event's ordering and authorization: an event about one
    customer must never change another's records, whatever id it carries.
    """
    survivor = await _read_customer(connection, subject, follow_merges=True)
    if survivor is None:
        raise _no_such_customer(subject)
    if survivor.id != owner:
        raise _not_the_subjects(entity, name, subject, field)


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
    async with _sql_transaction(changes, origin) as connection:
        # Never redirected to a survivor, even from upstream: the merged record keeps its own
        # email (unique), and which of two records' contact details the person keeps is a
        # person's choice, not the last event's.
        await _lock_customer(connection, customer_id)
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
        event = _event("customer.contact_changed", customer_id, values, at, origin)
        await add_to_sql_outbox(connection=connection, events=[event])
    await changes._invalidate("sql", "customer", keys=[customer_id])
    changes._published()
    return record, event


async def _lock_order(connection: AsyncConnection, order_id: int) -> OrderRecord:
    """The order, locked after its customer: customer first, as merges (which move orders
    between customers) lock them, so the two cannot deadlock."""
    while True:
        [order] = await orders_by_ids(connection=connection, ids=[order_id])
        if order is None:
            raise ChangeRejectedError("ORDER_NOT_FOUND", f"no order has id {order_id}", "orderId")
        await writes.lock_customer(connection=connection, customer_id=order.customer_id)
        locked = await writes.order_for_update(connection=connection, order_id=order_id)
        if locked is not None and locked.customer_id == order.customer_id:
            return locked
        # A merge moved the order to another customer meanwhile: lock that one instead.


async def change_order_status(
    changes: Changes,
    *,
    order_id: int,
    status: str,
    tracking_number: str | None = None,
    customer_id: int | None = None,
    origin: Event | None = None,
) -> tuple[OrderRecord, Event]:
    """Move an order to a new status, if that is a legal transition; with `customer_id` (an
    upstream event's subject), only an order of that customer or of its survivor."""
    if status not in ORDER_TRANSITIONS:
        raise ChangeRejectedError("INVALID_STATUS", f"unknown order status {status!r}", "status")
    at = dt.datetime.now(dt.UTC)
    async with _sql_transaction(changes, origin) as connection:
        order = await _lock_order(connection, order_id)
        if customer_id is not None:
            # Checked with the order's customer locked: no merge moves the order meanwhile.
            name = f"{order_id} ({order.number})"
            await _require_subjects(
                connection, customer_id, order.customer_id, "order", name, "orderId"
            )
        if status not in ORDER_TRANSITIONS[order.status]:
            allowed = ", ".join(sorted(ORDER_TRANSITIONS[order.status])) or "none"
            raise ChangeRejectedError(
                "ILLEGAL_TRANSITION",
                f"an order in {order.status} cannot become {status} (allowed: {allowed})",
                "status",
            )
        record = await writes.set_order_status(
            connection=connection,
            order_id=order_id,
            status=status,
            tracking_number=tracking_number,
            at=at,
        )
        data = {
            "order_id": str(order_id),
            "number": record.number,
            "status": status,
            "previous_status": order.status,
        }
        if record.tracking_number:
            data["tracking_number"] = record.tracking_number
        event = _event("order.status_changed", order.customer_id, data, at, origin)
        await add_to_sql_outbox(connection=connection, events=[event])
    await changes._invalidate("sql", "order", keys=[order_id])
    await changes._invalidate("sql", "order_page", owners=[record.customer_id])
    changes._published()
    return record, event


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
    customer_id = (await _require_customer(changes, customer_id, origin)).id
    at = dt.datetime.now(dt.UTC)
    data = {"channel": channel, "granted": granted}
    event = _event("consent.changed", customer_id, data, at, origin)
    db = changes.db

    async def write(session: Any) -> None:
        profile = await db.profiles.find_one({"_id": customer_id}, session=session)
        consents = [c for c in (profile or {}).get("consents", []) if c["channel"] != channel]
        consents.append({"channel": channel, "granted": granted, "updated_at": at})
        await db.profiles.update_one(
            {"_id": customer_id}, {"$set": {"consents": consents}}, upsert=True, session=session
        )

    await _mongo_transaction(changes, event, write)
    await changes._invalidate("mongo", "profile", keys=[customer_id])
    changes._published()
    return event


ADDRESS_KINDS = frozenset({"HOME", "BILLING", "SHIPPING"})
TICKET_STATUSES = frozenset({"OPEN", "PENDING", "RESOLVED"})


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
    async with _sql_transaction(changes, origin) as connection:
        customer_id = (await _lock_customer(connection, customer_id, origin)).id
        await writes.upsert_address(
            connection=connection, customer_id=customer_id, values=values, at=at
        )
        event = _event("customer.address_changed", customer_id, values, at, origin)
        await add_to_sql_outbox(connection=connection, events=[event])
    await changes._invalidate("sql", "addresses", keys=[customer_id])
    changes._published()
    return event


async def place_order(
    changes: Changes,
    *,
    customer_id: int,
    order_id: int,
    number: str,
    channel: str,
    currency: str,
    total_minor: int,
    lines: list[dict[str, Any]],
    placed_at: dt.datetime,
    origin: Event | None = None,
) -> Event:
    """Record an order placed upstream (the webshop, a store)."""
    subject = customer_id
    async with _sql_transaction(changes, origin) as connection:
        customer_id = (await _lock_customer(connection, customer_id, origin)).id
        skus = [line["sku"] for line in lines]
        unknown = set(skus) - await writes.known_skus(connection=connection, skus=skus)
        if unknown:
            raise ChangeRejectedError(
                "UNKNOWN_PRODUCT", f"unknown SKUs: {', '.join(sorted(unknown))}", "lines"
            )
        try:
            # The unique id and number decide, in a savepoint: a check before the insert could
            # not see another customer's transaction (its lock is not ours) taking them.
            async with connection.begin_nested():
                await writes.insert_order(
                    connection=connection,
                    order={
                        "id": order_id,
                        "customer_id": customer_id,
                        "number": number,
                        "status": "PLACED",
                        "channel": channel,
                        "total_minor": total_minor,
                        "currency": currency,
                        "tracking_number": None,
                        "placed_at": placed_at,
                        "updated_at": placed_at,
                    },
                    lines=[
                        {"order_id": order_id, "line_number": n, **line}
                        for n, line in enumerate(lines, 1)
                    ],
                )
        except IntegrityError:
            await _refuse_taken_order(
                connection,
                order_id,
                number,
                subject=subject,
                customer_id=customer_id,
                origin=origin,
            )
            raise
        data = {"order_id": str(order_id), "number": number, "status": "PLACED"}
        event = _event("order.placed", customer_id, data, placed_at, origin)
        await add_to_sql_outbox(connection=connection, events=[event])
    await changes._invalidate("sql", "order_page", owners=[customer_id])
    changes._published()
    return event


async def _refuse_taken_order(
    connection: AsyncConnection,
    order_id: int,
    number: str,
    *,
    subject: int,
    customer_id: int,
    origin: Event | None,
) -> None:
    """Refuse an order whose id or number is taken: another customer's (an event about one
    customer never names another's order), or the customer's own placed by another event. The
    same event again is a duplicate (delivery is at least once)."""
    owners = await writes.order_owners(connection=connection, order_id=order_id, number=number)
    if not owners:
        return
    if origin is not None and await in_sql_outbox(connection=connection, event_id=origin.id):
        raise DuplicateEventError(origin.id)
    name = f"{order_id} ({number})"
    if owners != {customer_id}:
        raise _not_the_subjects("order", name, subject, "orderId")
    raise ChangeRejectedError(
        "ORDER_EXISTS", f"customer {subject} has order {name} already", "orderId"
    )


async def record_interaction(
    changes: Changes,
    *,
    customer_id: int,
    interaction: dict[str, Any],
    origin: Event | None = None,
) -> Event:
    """Append an interaction to the customer's timeline."""
    customer_id = (await _require_customer(changes, customer_id, origin)).id
    interaction = {**interaction, "customer_id": customer_id}
    data = {
        "type": interaction["type"],
        "channel": interaction["channel"],
        "occurred_at": interaction["occurred_at"].isoformat(),
    }
    event = _event("interaction.recorded", customer_id, data, interaction["occurred_at"], origin)
    db = changes.db

    async def write(session: Any) -> None:
        await db.interactions.insert_one(interaction, session=session)

    await _mongo_transaction(changes, event, write)
    await changes._invalidate("mongo", "timeline_page", owners=[customer_id])
    changes._published()
    return event


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
        customer_id = (await _require_customer(changes, customer_id, origin)).id
    at = dt.datetime.now(dt.UTC)
    data: dict[str, Any] = {"ticket_id": ticket_id, "status": status}
    if assignee:
        data["assignee"] = assignee
    if eta:
        data["eta"] = eta.isoformat()
    event = _event("ticket.status_changed", customer_id, data, at, origin)
    db = changes.db

    async def write(session: Any) -> None:
        if subject is not None:
            # Read in the transaction that writes it: a merge moving the ticket meanwhile
            # conflicts with this transaction, which then runs again and reads it anew.
            found = await db.tickets.find_one(
                {"_id": ticket_id}, {"customer_id": 1}, session=session
            )
            if found is not None and int(found["customer_id"]) != customer_id:
                raise _not_the_subjects("ticket", ticket_id, subject, "ticketId")
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

    await _mongo_transaction(changes, event, write)
    await changes._invalidate("mongo", "tickets", owners=[customer_id])
    changes._published()
    return event


async def remove_address(
    changes: Changes, *, customer_id: int, kind: str, origin: Event | None = None
) -> Event:
    """Remove the customer's address of one kind."""
    at = dt.datetime.now(dt.UTC)
    async with _sql_transaction(changes, origin) as connection:
        customer_id = (await _lock_customer(connection, customer_id, origin)).id
        if not await writes.delete_address(
            connection=connection, customer_id=customer_id, kind=kind
        ):
            raise ChangeRejectedError(
                "ADDRESS_NOT_FOUND", f"the customer has no {kind} address", "kind"
            )
        data = {"kind": kind, "removed": True}
        event = _event("customer.address_changed", customer_id, data, at, origin)
        await add_to_sql_outbox(connection=connection, events=[event])
    await changes._invalidate("sql", "addresses", keys=[customer_id])
    changes._published()
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
    await _require_customer(changes, customer_id)
    at = dt.datetime.now(dt.UTC)
    ticket_id = f"T-{uuid.uuid4().hex[:10].upper()}"
    data = {"ticket_id": ticket_id, "status": "OPEN"}
    event = _event("ticket.status_changed", customer_id, data, at, None)
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

    await _mongo_transaction(changes, event, write)
    await changes._invalidate("mongo", "tickets", owners=[customer_id])
    changes._published()
    return ticket_id, event
