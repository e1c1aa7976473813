"""The garbage collector tuning a served process gets once it has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from api.app import create_app
from api.settings import Settings


@pytest.fixture
def collector() -> Iterator[None]:
    """Python's collector as it was, back after the test (the test process keeps its own)."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
async def test_a_served_app_freezes_its_startup_and_collects_the_young_less_often(
    settings: Settings,
) -> None:
    gc.unfreeze()
    tuned = settings.model_copy(update={"gc_young_threshold": 12_345})
    application = create_app(tuned, served=True)
    async with application.router.lifespan_context(application):
        assert gc.get_threshold()[0] == 12_345
        assert gc.get_freeze_count() > 10_000  # the schema, the modules, the clients


@pytest.mark.usefixtures("collector")
@pytest.mark.parametrize("served, threshold", [(False, 12_345), (True, 0)])
async def test_otherwise_the_collector_is_left_as_python_set_it(
    settings: Settings, served: bool, threshold: int
) -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    application = create_app(
        settings.model_copy(update={"gc_young_threshold": threshold}), served=served
    )
    async with application.router.lifespan_context(application):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
