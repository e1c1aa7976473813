"""Per-request loaders over the MongoDB source: one command per batch."""

from __future__ import annotations

from sources.cache.entity import EntityCache
from sources.dataloader import DataLoader, loader_property
from sources.loader import keyed_loader
from sources.mongo import queries
from sources.mongo.queries import Database
from sources.mongo.records import InteractionRecord, ProfileRecord, TicketRecord
from sources.mongo.source import MONGO
from sources.paging import Page, PageKey

# Loader names: they appear in cache keys, and invalidations name them.
PROFILE, TICKETS, TIMELINE_PAGE = "profile", "tickets", "timeline_page"
CUSTOMER_IDS_BY_IDENTITY = "customer_ids_by_identity"


class MongoLoaders:
    """The MongoDB loaders of one request, each made on first use."""

    def __init__(self, db: Database, timeout: float, cache: EntityCache | None) -> None:
        self._db = db
        self._timeout = timeout
        self._cache = cache

    @loader_property
    def profile_by_customer_id(self) -> DataLoader[int, ProfileRecord | None]:
        db = self._db
        return keyed_loader(
            MONGO.name,
            self._timeout,
            lambda k: queries.profiles_by_customer_ids(db=db, ids=k),
            cache=self._cache,
            name=PROFILE,
        )

    @loader_property
    def customer_ids_by_identity(self) -> DataLoader[tuple[str, str], list[int] | None]:
        """Customer ids by (identity type, value), for identity lookups: one query for the
        batch. Not cached: a merge moves identities to another profile, and a stale answer
        would send a caller to the wrong customer."""
        db = self._db
        return keyed_loader(
            MONGO.name,
            self._timeout,
            lambda k: queries.customer_ids_by_identities(db=db, keys=k),
            name=CUSTOMER_IDS_BY_IDENTITY,
        )

    @loader_property
    def tickets_by_customer(self) -> DataLoader[tuple[int, str | None], list[TicketRecord] | None]:
        db = self._db
        return keyed_loader(
            MONGO.name,
            self._timeout,
            lambda k: queries.tickets_by_customer_ids(db=db, keys=k),
            cache=self._cache,
            name=TICKETS,
            tagged=True,
        )

    @loader_property
    def timeline_page_by_customer(self) -> DataLoader[PageKey, Page[InteractionRecord] | None]:
        db = self._db
        return keyed_loader(
            MONGO.name,
            self._timeout,
            lambda k: queries.timeline_pages(db=db, keys=k),
            cache=self._cache,
            name=TIMELINE_PAGE,
            tagged=True,
        )
