"""The per-request DataLoader: batching, caching, errors, and batches answered at hand."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from typing import Any

import pytest

from sources.dataloader import MISSING, DataLoader, LoadCancelledError


class Source:
    """A batch function that records each batch it is asked."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.fail = fail

    async def __call__(self, keys: Sequence[Any]) -> list[Any]:
        self.batches.append(list(keys))
        await asyncio.sleep(0)  # as a real source waits on I/O
        if self.fail is not None:
            raise self.fail
        return [ValueError(f"no {k}") if k == "bad" else f"v{k}" for k in keys]


async def test_keys_asked_together_share_one_batch_and_a_key_is_asked_once() -> None:
    source = Source()
    loader = DataLoader(source)
    values = await asyncio.gather(loader.load(1), loader.load(2), loader.load(1))
    assert values == ["v1", "v2", "v1"]
    assert source.batches == [[1, 2]]
    assert await loader.load(2) == "v2" and source.batches == [[1, 2]]  # cached


async def test_keys_asked_by_tasks_started_a_tick_later_still_share_the_batch() -> None:
    source = Source()
    loader = DataLoader(source)

    async def later(key: int) -> Any:
        return await loader.load(key)

    first = loader.load(1)
    values = await asyncio.gather(later(2), later(3))  # gather's tasks start next iteration
    assert [await first, *values] == ["v1", "v2", "v3"]
    assert source.batches == [[1, 2, 3]]


async def test_a_value_that_is_an_error_fails_its_key_alone() -> None:
    loader = DataLoader(Source())
    good, bad = await asyncio.gather(loader.load("a"), loader.load("bad"), return_exceptions=True)
    assert good == "va"
    assert isinstance(bad, ValueError) and str(bad) == "no bad"


async def test_a_failed_batch_fails_every_key_and_is_not_cached() -> None:
    source = Source(fail=RuntimeError("down"))
    loader = DataLoader(source)
    results = await asyncio.gather(loader.load(1), loader.load(2), return_exceptions=True)
    assert [str(r) for r in results] == ["down", "down"]
    source.fail = None
    assert await loader.load(1) == "v1"
    assert source.batches == [[1, 2], [1]]


async def test_a_batch_of_the_wrong_length_fails_its_keys() -> None:
    async def short(keys: Sequence[int]) -> list[str]:
        return ["only one"]

    loader = DataLoader(short)
    with pytest.raises(TypeError, match="a batch of 2 keys gave 1 values"):
        await asyncio.gather(loader.load(1), loader.load(2))


async def test_values_at_hand_are_answered_when_asked_and_the_rest_go_to_the_batch() -> None:
    source = Source()
    held = {1: "held 1", 3: None}
    peeked: list[list[int]] = []

    def peek(keys: Sequence[int]) -> list[Any]:
        peeked.append(list(keys))
        return [held.get(k, MISSING) for k in keys]

    loader = DataLoader(source, peek=peek)
    futures = [loader.load(1), loader.load(2), loader.load(3)]
    # Whoever awaits a value at hand does not wait for the batch.
    assert [f.done() for f in futures] == [True, False, True]
    futures.append(loader.load(5))
    held[2] = "held 2 now"  # comes to hand between the ask and the batch
    assert await asyncio.gather(*futures) == ["held 1", "held 2 now", None, "v5"]
    # Each key when asked; those not at hand again when their batch goes.
    assert peeked == [[1], [2], [3], [5], [2, 5]]
    assert source.batches == [[5]]


async def test_now_answers_a_value_at_hand_once_and_leaves_the_rest_to_load() -> None:
    source = Source()
    held: dict[Any, Any] = {1: "held 1", "bad": ValueError("no bad")}
    peeked: list[list[Any]] = []

    def peek(keys: Sequence[Any]) -> list[Any]:
        peeked.append(list(keys))
        return [held.get(k, MISSING) for k in keys]

    loader = DataLoader(source, peek=peek)
    assert loader.now(1) == "held 1"
    held[1] = "changed since"  # a request sees one value of a key, whoever asks it later
    assert loader.now(1) == "held 1" and await loader.load(1) == "held 1"
    assert peeked == [[1]]
    # Not at hand, or failing: MISSING, and `load` goes to the source as ever.
    assert loader.now(2) is MISSING and loader.now("bad") is MISSING
    with pytest.raises(ValueError, match="no bad"):
        await loader.load("bad")
    assert await loader.load(2) == "v2" and loader.now(2) == "v2"
    assert source.batches == [[2]]
    # What an answer built on this loader read: every key, a failed one with its error.
    answers = dict(loader.answers())
    assert answers.keys() == {1, 2, "bad"} and isinstance(answers.pop("bad"), ValueError)
    assert answers == {1: "held 1", 2: "v2"}


async def test_load_many_answers_in_key_order_and_none_is_no_key() -> None:
    loader = DataLoader(Source())
    assert await loader.load_many([3, 1, 2]) == ["v3", "v1", "v2"]
    with pytest.raises(TypeError):
        loader.load(None)


async def test_a_peek_that_raises_fails_its_keys_rather_than_stranding_them() -> None:
    def broken(keys: Sequence[int]) -> list[Any]:
        raise RuntimeError("cache bug")

    loader = DataLoader(Source(), peek=broken)
    results = await asyncio.gather(loader.load(1), loader.load(2), return_exceptions=True)
    assert [str(r) for r in results] == ["cache bug", "cache bug"]

    def short(keys: Sequence[int]) -> list[Any]:
        return [MISSING]

    loader = DataLoader(Source(), peek=short)
    results = await asyncio.gather(loader.load(1), loader.load(2), return_exceptions=True)
    assert [str(r) for r in results] == ["a peek at 2 keys gave 1 values"] * 2


async def test_a_cancelled_batch_fails_its_waiters_and_is_not_cached() -> None:
    started = asyncio.Event()

    async def stuck(keys: Sequence[int]) -> list[str]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    loader = DataLoader(stuck)
    waiter = loader.load(1)
    await started.wait()
    [batch] = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "DataLoader._run"]
    batch.cancel()
    # The field waiting was not cancelled itself: it gets an error, as for a failed batch.
    with pytest.raises(LoadCancelledError):
        await waiter
    loader.batch = Source()
    assert await loader.load(1) == "v1"


async def test_an_error_nobody_awaits_is_not_logged_as_never_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loader = DataLoader(Source(fail=RuntimeError("down")))
    future = loader.load(1)  # its request timed out: nobody awaits it
    await asyncio.wait([future])  # done, its exception not asked for
    del future, loader
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_held_failures_fail_again_at_once_without_a_batch() -> None:
    source = Source(fail=RuntimeError("down"))
    loader = DataLoader(source)
    results = await asyncio.gather(loader.load(1), loader.load(2), return_exceptions=True)
    assert [str(r) for r in results] == ["down", "down"]
    source.fail = None

    loader.hold_failures()

    held = loader.load(1)
    assert held.done() and str(held.exception()) == "down"
    assert await loader.load(3) == "v3"  # a key that never failed still goes to the source
    assert source.batches == [[1, 2], [3]]
