"""Prepare the bench dataset on the configured stores: seed it once, reuse it after."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

from sqlalchemy.engine import make_url
from tqdm import tqdm

from api.embedded import embedded_stores, uses_simulator
from api.settings import Settings
from bench.workloads import HOT_SET
from migrations.runner import upgrade
from sources.mongo.client import create_client
from sources.seed.generator import FIRST_NAMES, LAST_NAMES
from sources.seed.loader import customer_count, seed
from sources.sql.engine import create_engine
from sources.sql.search import reindex_search, terms_missing
from sources.thirdparty.simulator import VendorStore


class DatasetError(RuntimeError):
    """The configured stores hold a dataset of another size."""


def bench_settings(customers: int, data_dir: Path | None) -> Settings:
    """The settings the bench runs on: the environment's, with the embedded stores' files
    in a directory of their own per scale (so the demo data in ./var is left alone) and per
    configured SQL database: the embedded MongoDB seeded with one SQL database is never met
    by another (its documents would be seeded twice)."""
    settings = Settings()
    if data_dir is None and "data_dir" not in settings.model_fields_set:
        data_dir = Path("var") / f"bench-{customers}"
        if settings.database_url:
            url = make_url(settings.database_url)
            label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{url.get_backend_name()}-{url.database}")
            data_dir = Path("var") / f"bench-{customers}-{label}"
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


async def _prepare(settings: Settings, customers: int, simulator: bool) -> int:
    engine = create_engine(settings.resolved_database_url())
    assert settings.mongo_url is not None
    mongo = create_client(settings.mongo_url, timeout=30)
    vendors = VendorStore(settings.data_dir / "vendors.sqlite") if simulator else None
    try:
        existing = await customer_count(engine)
        if existing == customers:
            if await terms_missing(engine=engine):
                # A dataset seeded before a migration that remade the search terms.
                with tqdm(total=customers, unit="customer", desc="indexing") as bar:
                    await reindex_search(engine=engine, progress=bar.update)
            return 0
        if existing:
            raise DatasetError(
                f"the stores hold {existing} customers but the bench asked for {customers}: "
                f"pass --customers {existing}, or point the bench at empty stores"
            )
        db = mongo[settings.mongo_database]
        if await db.profiles.find_one({}, {"_id": 1}) is not None:
            raise DatasetError(
                f"the SQL database is empty but MongoDB database {settings.mongo_database!r} "
                "holds another dataset's documents: point the bench at an empty MongoDB "
                "(C360_MONGO_URL or C360_MONGO_DATABASE), or, for the embedded one, remove "
                f"{settings.data_dir / 'mongo'}"
            )
        counts = await seed(
            engine=engine,
            db=db,
            vendors=vendors,
            customers=customers,
            progress=True,
        )
        return counts["customers"]
    finally:
        if vendors is not None:
            vendors.close()
        await mongo.close()
        await engine.dispose()


def prepare_dataset(settings: Settings, customers: int) -> int:
    """Migrate and seed `customers` customers unless already there; returns how many were
    seeded (0 when the dataset was reused)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url())
    simulator = uses_simulator(settings)
    # The simulator's data file is written directly: no simulator needs to run.
    with embedded_stores(settings.with_vendor_urls("-") if simulator else settings) as resolved:
        return asyncio.run(_prepare(resolved, customers, simulator))


def customer_ids(customers: int, rotation: str, *, seed: int = 7) -> list[int]:
    """The ids a workload's requests go through, in order.

    hot: the hot set; cold: every other customer once, shuffled, so no request repeats one
    (nor any customer of the hot set); all: every customer in turn; none: no ids.
    """
    if rotation == "none":
        return []
    hot = list(range(1, min(HOT_SET, customers) + 1))
    if rotation == "hot":
        return hot
    if rotation == "cold":
        cold = list(range(len(hot) + 1, customers + 1)) or hot
        random.Random(seed).shuffle(cold)
        return cold
    everyone = list(range(1, customers + 1))
    random.Random(seed).shuffle(everyone)
    return everyone


def search_prefixes(*, seed: int = 7) -> list[str]:
    """What agents type into search, in a shuffled order: every 2, 3 and 4 letter prefix of
    the names the generator gives (first names also start the seeded emails)."""
    prefixes = sorted(
        {
            name.lower()[:length]
            for name in (*FIRST_NAMES, *LAST_NAMES)
            for length in (2, 3, 4)
            if len(name) >= length
        }
    )
    random.Random(seed).shuffle(prefixes)
    return prefixes


def request_keys(customers: int, rotation: str) -> list[int] | list[str]:
    """The values a workload's requests go through, in order: customer ids (see
    `customer_ids`), or search prefixes for the `prefixes` rotation."""
    if rotation == "prefixes":
        return search_prefixes()
    return customer_ids(customers, rotation)
