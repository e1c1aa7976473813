"""Run by `test_a_new_vendor`: declare a third vendor API the way a new one is declared, then
start c360 and report, as JSON on stdout, what of c360 picked it up.

A module, not a test: the declaration must be in `sources.catalog` before anything else of
c360 is imported, so it runs in a process of its own. What a real vendor adds beyond this
(its batch call, loaders, simulator routes and resolvers) is its own code; this child checks
that nothing else has to name it.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass

import sources.catalog as catalog
from sources.declaration import VendorAPI


@dataclass(frozen=True, slots=True)
class ForecastRecord:
    city: str
    celsius: float


WEATHER = VendorAPI(
    name="weather", title="a weather API", records=(ForecastRecord,), ttl=30.0, timeout=0.5
)
# What `sources/catalog.py` would list: the one line outside the vendor's own files.
catalog.VENDORS = (*catalog.VENDORS, WEATHER)
catalog.SOURCES = (*catalog.SOURCES, WEATHER)
catalog.NAMES = (*catalog.NAMES, WEATHER.name)


async def main() -> dict[str, object]:
    import httpx
    from pymongo import AsyncMongoClient

    from api.app import create_app
    from api.settings import Settings
    from bench.report import Report, markdown
    from sources.cache import codec

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://c360.test") as http:
                ready = (await http.get("/readyz")).json()
                metrics = (await http.get("/metrics")).text
            ttls = app.state.connections.cache.policy.ttls
    finally:
        mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(settings.mongo_url)
        await mongo.drop_database(settings.mongo_database)
        await mongo.close()
    record = ForecastRecord("Lyon", 21.5)
    environment = dict.fromkeys(
        ("customers", "sql", "mongo", "vendors", "cache", "workers", "cpus", "duration_s"), 0
    )
    report = markdown(Report("now", environment | {"commit": "-"}, [], []))
    return {
        "settings": settings.per_source["weather"].model_dump(),
        "cache_ttl_in_force": ttls.get("weather"),
        "codec_round_trip": codec.decode(codec.encode(record)) == record,
        "readyz": ready["stores"].get("weather"),
        "metrics": [line for line in metrics.splitlines() if 'source="weather"' in line],
        "bench_columns": next(line for line in report.splitlines() if "round trips/req" in line),
        "pid": os.getpid(),
    }


if __name__ == "__main__":
    from api.settings import Settings
    from migrations.runner import upgrade

    upgrade(Settings(_env_file=None).resolved_database_url())  # type: ignore[call-arg]
    print(json.dumps(asyncio.run(main())))
