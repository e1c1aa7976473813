"""The live connections to every store, opened once per process and shared by all requests."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from api.settings import Settings
from domain.audit import AuditLog
from domain.changes import Changes
from domain.merges import StalledMerges
from sources.cache.backends import CacheBackend, MemoryBackend
from sources.cache.cluster import redis_backend
from sources.cache.entity import CachePolicy, EntityCache
from sources.cache.responses import ResponseCache
from sources.catalog import VENDORS
from sources.events.bus import EventBus, InProcessBus, RedisStreamBus
from sources.events.hub import Hub
from sources.events.outbox import Relay
from sources.events.outbox_upgrade import list_legacy_ids
from sources.events.retention import Retention, Windows
from sources.mongo.client import create_client as create_mongo_client
from sources.mongo.queries import Database, ensure_indexes
from sources.mongo.source import MONGO
from sources.roundtrips import RoundTrips
from sources.sql.engine import create_engine
from sources.sql.source import SQL
from sources.thirdparty.client import VendorClient
from sources.thirdparty.client import create_client as create_vendor_client

log = logging.getLogger(__name__)

# How often each instance looks for merges a failure cut short (and how old they must be).
STALLED_MERGES_SECONDS = 60.0


@dataclass
class Connections:
    """Engines, clients and the round-trip counters behind them."""

    settings: Settings
    round_trips: RoundTrips
    # Writes (mutations, event appliers), and the loaders' reads: an autocommit engine on
    # PostgreSQL, a read-only one calling SQLite on the event loop's thread
    # (`sources.sql.engine.create_engine`).
    engine: AsyncEngine
    reads: AsyncEngine
    mongo: AsyncMongoClient[dict[str, Any]]
    db: Database
    # Every declared vendor API's client, by its name (`sources.catalog.VENDORS`).
    vendors: dict[str, VendorClient]
    cache: EntityCache | None
    bus: EventBus
    hub: Hub
    relay: Relay
    changes: Changes
    audit: AuditLog
    # Query answers per caller's view, over the entity cache (`sources.cache.responses`).
    responses: ResponseCache | None = None


# The embedded bus's journal, in the data directory.
EVENTS_JOURNAL = "events.jsonl"


def create_bus(settings: Settings) -> EventBus:
    """Redis Streams when Redis is configured (shared, durable), else an in-process log kept
    in a journal file of the data directory (so `after` works across a restart)."""
    if settings.redis_url:
        return RedisStreamBus(
            settings.redis_url,
            namespace=settings.cache_namespace,
            max_length=settings.events_stream_max_length,
            retention_seconds=settings.events_retention_seconds,
        )
    return InProcessBus(
        max_length=settings.events_stream_max_length,
        retention_seconds=settings.events_retention_seconds,
        journal=settings.data_dir / EVENTS_JOURNAL,
    )


def create_cache(settings: Settings) -> EntityCache | None:
    """The entity cache: Redis when configured (shared by every instance), else in-process."""
    if not settings.cache_enabled:
        return None
    backend: CacheBackend
    if settings.redis_url:
        backend = redis_backend(
            settings.redis_url,
            timeout=settings.redis_timeout,
            breaker_seconds=settings.redis_breaker_seconds,
        )
    else:
        backend = MemoryBackend(settings.cache_max_entries)
    policy = CachePolicy(
        ttls=settings.cache_ttls(),
        negative_ttl=settings.cache_negative_ttl,
        stale_grace=settings.cache_stale_grace,
        # Longer than any source call may take (and, for the response cache, than any
        # operation may run): a read begun before a write cannot put the old value back
        # after the write's invalidation.
        hold=max(
            2 * max(settings.source_timeout(s) for s in settings.cache_ttls()),
            settings.execution_timeout if settings.response_cache_enabled else 0.0,
        )
        + 1,
    )
    return EntityCache(backend, policy, namespace=settings.cache_namespace)


@contextlib.asynccontextmanager
async def open_connections(settings: Settings) -> AsyncIterator[Connections]:
    """Open every store's connection for the settings in force; close them on exit.

    The settings must name every store (embedded ones are started by the caller and their
    URLs filled in first, see `api.embedded`).
    """
    vendor_urls = {api.name: settings.vendor_url(api.name) for api in VENDORS}
    if not settings.mongo_url or None in vendor_urls.values():
        raise ValueError(
            "open_connections needs resolved settings: start the embedded stores first"
        )
    round_trips = RoundTrips()
    url = settings.resolved_database_url()
    postgres = make_url(url).get_backend_name() == "postgresql"
    if postgres:
        # Per process at the most: 15 connections for writes, 25 for reads and 5 in the
        # background: two processes stay under the 97 of PostgreSQL's default max_connections
        # (100) open to an ordinary role, with room for the CLI and migrations.
        engine = create_engine(url, round_trips=round_trips, pool_size=10, max_overflow=5)
        reads = create_engine(url, round_trips=round_trips, reads=True, max_overflow=5)
    else:
        engine = reads = create_engine(url, round_trips=round_trips)
        if make_url(url).database not in (None, "", ":memory:"):  # a file both can open
            reads = create_engine(
                url,
                round_trips=round_trips,
                reads=True,
                statement_seconds=settings.source_timeout(SQL.name),
            )
    mongo_timeout = settings.source_timeout(MONGO.name)
    mongo = create_mongo_client(settings.mongo_url, timeout=mongo_timeout, round_trips=round_trips)
    vendors = {
        api.name: create_vendor_client(
            api,
            str(vendor_urls[api.name]),
            timeout=settings.source_timeout(api.name),
            round_trips=round_trips,
        )
        for api in VENDORS
    }
    cache = create_cache(settings)
    db = mongo[settings.mongo_database]
    bus = create_bus(settings)
    hub = Hub(bus, queue_size=settings.subscription_queue_size)
    # The relay and the audit log work in the background on connections of their own: their
    # writes are not a request's work, and must not show in the round-trip counters.
    relay_engine = create_engine(url, pool_size=3, max_overflow=2)
    relay_mongo = create_mongo_client(settings.mongo_url, timeout=mongo_timeout)
    relay = Relay(
        engine=relay_engine,
        db=relay_mongo[settings.mongo_database],
        bus=bus,
        poll_seconds=settings.relay_poll_seconds,
    )
    # The audit log writes in batches on the same background engine, off the request path.
    audit = AuditLog(
        relay_engine,
        flush_seconds=settings.audit_flush_seconds,
        hold_seconds=2 * settings.execution_timeout,
    )
    background = Changes(
        engine=relay_engine, db=relay_mongo[settings.mongo_database], cache=cache, relay=relay
    )
    stalled = StalledMerges(background, every_seconds=STALLED_MERGES_SECONDS)
    retention = Retention(
        engine=relay_engine,
        db=relay_mongo[settings.mongo_database],
        windows=Windows(
            outbox_seconds=settings.retention_outbox_seconds,
            dead_letters_seconds=settings.retention_dead_letters_seconds,
        ),
        every_seconds=settings.retention_every_seconds,
    )
    # Idempotent: a store seeded before an index was added to `INDEXES` gets it here.
    try:
        await ensure_indexes(db=relay_mongo[settings.mongo_database])
        await list_legacy_ids(db=relay_mongo[settings.mongo_database])
    except PyMongoError:
        log.warning("could not ensure MongoDB's indexes; queries may scan", exc_info=True)
    await hub.start()
    if settings.relay_enabled:
        relay.start()
        stalled.start()
        retention.start()
    audit.start()
    try:
        yield Connections(
            settings=settings,
            round_trips=round_trips,
            engine=engine,
            reads=reads,
            mongo=mongo,
            db=db,
            vendors=vendors,
            cache=cache,
            bus=bus,
            hub=hub,
            relay=relay,
            changes=Changes(engine=engine, db=db, cache=cache, relay=relay),
            audit=audit,
            responses=(
                ResponseCache(cache)
                if cache is not None and settings.response_cache_enabled
                else None
            ),
        )
    finally:
        await audit.stop()
        await retention.stop()
        await stalled.stop()
        await relay.stop()
        await hub.stop()
        await bus.close()
        await relay_mongo.close()
        await relay_engine.dispose()
        if cache is not None:
            await cache.close()
        for client in vendors.values():
            await client.close()
        await mongo.close()
        if reads is not engine:
            await reads.dispose()
        await engine.dispose()
