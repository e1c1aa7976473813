"""The churn workload's check finds an answer kept past its change, and passes a sound cache."""

from __future__ import annotations

from typing import Any

import pytest

from api.connections import Connections
from api.settings import Settings
from bench.churn import run_churn
from sources.cache.responses import Reads, ResponseCache
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer
from tests.conftest import running_app


async def test_the_check_passes_a_sound_cache_and_catches_a_kept_stale_answer(
    cached_settings: Settings,
    connections: Connections,
    vendor_store: VendorStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = [await build_customer(connections, vendor_store) for _ in range(3)]
    async with running_app(cached_settings) as (_, http):
        sound = await run_churn(http, ids, rate=3, seconds=2.0)
        reads = ResponseCache.reads

        def untagged(self: ResponseCache, loaders: Any) -> Reads | None:
            # A broken cache: answers filed under no entity, so no change reaches them.
            kept = reads(self, loaders)
            return None if kept is None else Reads((), kept.ttl)

        monkeypatch.setattr(ResponseCache, "reads", untagged)
        broken = await run_churn(http, ids, rate=3, seconds=4.0)
    # Six ticks; a customer still being checked when its turn comes round is skipped.
    assert sound.changes + sound.skipped == 6 and sound.changes >= 3, sound
    assert sound.checks == 2 * sound.changes and sound.stale == 0, sound
    assert not sound.failures and sound.example is None
    # Each customer changed again: a later change finds an earlier one's answer kept.
    assert broken.stale > 0, broken
    assert broken.example is not None and "is not the executed one" in broken.example
