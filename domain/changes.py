"""What every change shares: the stores it writes, a transaction per store with the event in its
outbox, and the customer a change is about.

An event id is the idempotency key: applying an event whose id is already in an outbox
changes nothing (the outbox's unique id refuses it inside the same transaction).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.errors import (
    DuplicateEventError,
    merged_customer,
    no_such_customer,
    not_the_subjects,
)
from sources.cache.backends import CacheUnavailableError
from sources.cache.entity import EntityCache
from sources.declaration import Source
from sources.events.envelope import C360_SOURCE, Event
from sources.events.outbox import (
    TRANSACTION_ID,
    Relay,
    add_to_mongo_outbox,
)
from sources.loader import outages_as_source_errors
from sources.mongo import idempotency as mongo_idempotency
from sources.mongo.queries import Database
from sources.sql import idempotency, writes
from sources.sql.engine import SQL_ERRORS, one_writer
from sources.sql.queries import customers_by_ids
from sources.sql.records import CustomerRecord

log = logging.getLogger(__name__)


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

    async def invalidate(
        self, source: Source, name: str, *, keys: Sequence[Any] = (), owners: Sequence[Any] = ()
    ) -> None:
        if self.cache is None:
            return
        try:
            await self.cache.invalidate(source.name, name, keys=keys, owners=owners)
        except CacheUnavailableError:
            # Kept and replayed before the cache is read again (see RedisBackend).
            pass
        except Exception:
            # The change committed: nothing after the commit may report it as failed. The
            # entries expire with their TTL, and the change's event invalidates them again.
            log.exception("invalidating %s %s after a committed change failed", source.name, name)

    def published(self) -> None:
        if self.relay is not None:
            self.relay.wake()


def change_event(
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
async def sql_transaction(changes: Changes, origin: Event | None) -> AsyncIterator[AsyncConnection]:
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


async def mongo_transaction(
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
        if event.extensions.get("origin") is not None and duplicate_key(error):
            raise DuplicateEventError(event.id) from error
        raise
    if claim is not None:
        try:
            await idempotency.applied(engine=changes.engine, claim=claim)
        except SQL_ERRORS:
            # The MongoDB marker, committed with the change, still refuses a second one.
            log.warning("could not mark idempotency key applied in SQL", exc_info=True)


def duplicate_key(error: DuplicateKeyError | BulkWriteError) -> bool:
    if isinstance(error, DuplicateKeyError):
        return True
    return any(e.get("code") == 11000 for e in error.details.get("writeErrors", []))


async def read_customer(
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


async def survivors(
    changes: Changes, customer_ids: Sequence[int]
) -> dict[int, CustomerRecord | None]:
    """The customer each id names, or the survivor its merges lead to (as `require_customer`
    finds it for an upstream event), unlocked: one query for all of them, and one more per
    merged one. None where no customer has the id."""
    found: dict[int, CustomerRecord | None] = {}
    with outages_as_source_errors("sql", "a change", SQL_ERRORS):
        async with changes.engine.connect() as connection:
            customers = await customers_by_ids(connection=connection, ids=customer_ids)
            for customer_id, customer in zip(customer_ids, customers, strict=True):
                if customer is not None and customer.merged_into is not None:
                    customer = await read_customer(connection, customer_id, follow_merges=True)
                found[customer_id] = customer
    return found


async def lock_customer(
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
        survivor = await read_customer(connection, customer_id, follow_merges=True)
        target = survivor.id if survivor is not None else customer_id
    customer = await writes.lock_customer(connection=connection, customer_id=target)
    if customer is None:
        raise no_such_customer(customer_id)
    if customer.merged_into is not None:
        # Named by a client, or merged between the read above and the lock.
        raise merged_customer(customer)
    return customer


async def require_customer(
    changes: Changes, customer_id: int, origin: Event | None = None
) -> CustomerRecord:
    """The customer to change in MongoDB, by `lock_customer`'s rules (without a lock)."""
    with outages_as_source_errors("sql", "a change", SQL_ERRORS):
        async with changes.engine.connect() as connection:
            customer = await read_customer(
                connection, customer_id, follow_merges=origin is not None
            )
    if customer is None:
        raise no_such_customer(customer_id)
    if customer.merged_into is not None:
        raise merged_customer(customer)
    return customer


async def require_subjects(
    connection: AsyncConnection, subject: int, owner: int, entity: str, name: str, field: str
) -> None:
    """Refuse unless `owner`, the customer holding (and locked for) the entity an event names,
    is the event's subject or, after merges, the subject's survivor.

    The subject is the unit of an event's ordering and authorization: an event about one
    customer must never change another's records, whatever id it carries.
    """
    survivor = await read_customer(connection, subject, follow_merges=True)
    if survivor is None:
        raise no_such_customer(subject)
    if survivor.id != owner:
        raise not_the_subjects(entity, name, subject, field)
