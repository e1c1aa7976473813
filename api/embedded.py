"""Start the embedded stand-ins for every store whose URL is not configured.

`make run` needs nothing but Python: an unset C360_MONGO_URL starts SecantusDB in a child
process, unset vendor URLs start the bundled simulator in a thread. The result is a copy of
the settings with every URL filled in, which `c360 serve` hands to its uvicorn workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from api.settings import Settings


@contextlib.contextmanager
def embedded_stores(settings: Settings) -> Iterator[Settings]:
    """Settings with every store reachable, starting embedded ones for the unset URLs."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if settings.mongo_url is None:
            from sources.mongo.embedded import embedded_mongo

            mongo_url = stack.enter_context(embedded_mongo(settings.data_dir / "mongo"))
            settings = settings.model_copy(update={"mongo_url": mongo_url})
        if uses_simulator(settings):
            from sources.thirdparty.simulator import running_simulator

            url = stack.enter_context(
                running_simulator(
                    settings.data_dir / "vendors.sqlite",
                    latency_ms=settings.simulator_latency_ms,
                    failure_rate=settings.simulator_failure_rate,
                )
            )
            settings = settings.with_vendor_urls(url)
        yield settings


def uses_simulator(settings: Settings) -> bool:
    """Whether any vendor API is the bundled simulator (so the seeder may fill it)."""
    return bool(settings.simulated_vendors())
