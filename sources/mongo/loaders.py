"""Per-request loaders over the MongoDB source: one command per batch."""

from __future__ import annotations

from dataclasses import dataclass

from aiodataloader import DataLoader

from sources.loader import keyed_loader
from sources.mongo import queries
from sources.mongo.queries import Database
from sources.mongo.records import InteractionRecord, ProfileRecord, TicketRecord
from sources.paging import Page, PageKey
from sources.roundtrips import MONGO


@dataclass(frozen=True, slots=True)
class MongoLoaders:
    profile_by_customer_id: DataLoader[int, ProfileRecord | None]
    tickets_by_customer: DataLoader[tuple[int, str | None], list[TicketRecord] | None]
    timeline_page_by_customer: DataLoader[PageKey, Page[InteractionRecord] | None]


def create_mongo_loaders(db: Database, timeout: float) -> MongoLoaders:
    """Fresh loaders for one request (or one WebSocket operation)."""
    return MongoLoaders(
        profile_by_customer_id=keyed_loader(
            MONGO, timeout, lambda k: queries.profiles_by_customer_ids(db=db, ids=k)
        ),
        tickets_by_customer=keyed_loader(
            MONGO, timeout, lambda k: queries.tickets_by_customer_ids(db=db, keys=k)
        ),
        timeline_page_by_customer=keyed_loader(
            MONGO, timeout, lambda k: queries.timeline_pages(db=db, keys=k)
        ),
    )
