"""The per-request DataLoader: one batch per loader per tick, one future per key.

Every `load(key)` of one request is cached: the same key asks the source once. Keys asked
within the same couple of event-loop iterations go to the source in one batch. Batching waits
two iterations, as aiodataloader did, so the keys asked by every resolver that a gathered
list starts on the next iteration still share the batch.

What is cheaper than aiodataloader: a key whose value is at hand (`peek`: an in-process cache
hit, a replayed recording) is answered when it is asked, so whoever awaits it does not wait at
all and a request whose values are all at hand runs in a few loop iterations, not three per
level of its document; a batch that needs I/O costs one task, not two; making a loader costs a
few attribute writes. A key not at hand when asked is looked at again when its batch is
dispatched (another request may have filled the cache meanwhile).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# What `peek` gives for a key whose value is not at hand.
MISSING: Any = object()

BatchFn = Callable[[Sequence[K]], Awaitable[Sequence[Any]]]
# The values of keys at hand without I/O, `MISSING` for the others, in key order.
PeekFn = Callable[[Sequence[K]], list[Any]]


class loader_property(Generic[V]):  # lower case: a decorator, as `property` is
    """A request's loader, made on first use and kept on the group of loaders it belongs to.

    `functools.cached_property` does the same, but on Python 3.11 it takes a lock on every
    first use: about 10 loaders a request made the lock a measurable part of a warm query.
    Like it, this is a non-data descriptor: once made, the instance's own attribute answers."""

    def __init__(self, make: Callable[[Any], V]) -> None:
        self.make = make
        self.name = make.__name__
        self.__doc__ = make.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> loader_property[V]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> V: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.make(instance)
        return value


class LoadCancelledError(Exception):
    """A batch stopped before it answered (the process is shutting down, as a rule)."""


class DataLoader(Generic[K, V]):
    """Loads values by key in batches. A value that is an Exception instance fails its key
    alone; a batch that raises fails every key of it, and those keys are not cached."""

    __slots__ = (
        "_failures",
        "_futures",
        "_keys",
        "_loop",
        "_scheduled",
        "_values",
        "batch",
        "failed",
        "fresh",
        "origin",
        "peek",
    )

    def __init__(
        self,
        batch: BatchFn[K],
        *,
        peek: PeekFn[K] | None = None,
        origin: tuple[str, str, bool] | None = None,
        fresh: dict[K, float] | None = None,
    ) -> None:
        self.batch = batch
        self.peek = peek
        # The entity cache's (source, loader name, tagged) of what it loads, or None when its
        # values are not cached (nothing would say when an answer built on them is false),
        # and until when each value loaded stays fresh (filled by the cache as it answers).
        self.origin = origin
        self.fresh = fresh
        self.failed = False  # whether a key failed: an answer built with it has an error
        self._futures: dict[K, asyncio.Future[V]] = {}
        # Keys answered by `now` and not asked for since: a value, and no future made for it.
        self._values: dict[K, V] = {}
        # The keys that failed, with their errors (None until one does).
        self._failures: dict[K, Exception] | None = None
        self._keys: list[K] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self, key: K) -> Any:
        """`key`'s value when it is at hand (asked before and answered, or `peek` has it), else
        `MISSING`: then `load` it and wait. No future is made for a value at hand, the cheapest
        way through a warm cache (the engine's optimistic run asks each loaded field this way).
        A key that would fail is `MISSING` here too: `load` settles it, with its error."""
        values = self._values
        value = values.get(key, MISSING)
        if value is not MISSING:
            return value
        future = self._futures.get(key)
        if future is not None:
            if future.done() and not future.cancelled() and future.exception() is None:
                return future.result()
            return MISSING
        if self.peek is None or key is None:
            return MISSING
        try:
            found = self.peek([key])
        except Exception:
            return MISSING  # `load` peeks again, and fails the key
        if len(found) != 1 or isinstance(found[0], Exception):
            return MISSING
        value = found[0]
        if value is not MISSING:
            values[key] = value
        return value

    def load(self, key: K) -> asyncio.Future[V]:
        """The future of `key`'s value."""
        future = self._futures.get(key)
        if future is not None:
            return future
        if key is None:
            raise TypeError("DataLoader.load() needs a key, not None")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = self._futures[key] = loop.create_future()
        if self._values:
            value = self._values.pop(key, MISSING)
            if value is not MISSING:  # answered by `now`: it holds no future yet
                future.set_result(value)
                return future
        if self.peek is not None and self._answered(key, future):
            return future
        self._keys.append(key)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(loop.call_soon, self._dispatch)
        return future

    def answers(self) -> Iterator[tuple[K, Any]]:
        """Every key asked of this loader that did not fail (as a batch), with its value: an
        Exception for a key that failed alone, `MISSING` for one still pending."""
        yield from self._values.items()
        for key, future in self._futures.items():
            if not future.done() or future.cancelled():
                yield key, MISSING
            else:
                yield key, future.exception() or future.result()

    def hold_failures(self) -> None:
        """Each key that has failed so far fails again at once when asked, instead of going
        to the source again: an execution run a second time over what the first one loaded
        (`api.engine.optimistic`) meets the same values and the same failures, with no second
        wait on a source that is down. (Only batches that raised fail their keys this way, a
        bug's or a cancellation's; a source's outage is a per-key value, kept anyway.)"""
        if not self._failures:
            return
        assert self._loop is not None  # a key failed, so one was asked
        for key, error in self._failures.items():
            if key not in self._futures:
                future = self._futures[key] = self._loop.create_future()
                _settle(future, error)

    def load_many(self, keys: Iterable[K]) -> asyncio.Future[list[V]]:
        """The values of `keys`, in order, in the same batch."""
        return asyncio.gather(*[self.load(key) for key in keys])

    def _answered(self, key: K, future: asyncio.Future[V]) -> bool:
        """Settle `key` now if its value is at hand; whether it was."""
        assert self.peek is not None
        try:
            values = self.peek([key])
            if len(values) != 1:
                raise TypeError(f"a peek at 1 key gave {len(values)} values")
        except Exception as error:  # as at dispatch: the key fails, and is not kept
            self._fail([key], error)
            return True
        if values[0] is MISSING:
            return False
        _settle(future, values[0])
        return True

    def _dispatch(self) -> None:
        keys, self._keys = self._keys, []
        self._scheduled = False
        if self.peek is not None:
            try:
                values = self.peek(keys)
                if len(values) != len(keys):
                    raise TypeError(f"a peek at {len(keys)} keys gave {len(values)} values")
            except Exception as error:  # a loop callback: raised, it would strand every key
                self._fail(keys, error)
                return
            missing = []
            for key, value in zip(keys, values, strict=True):
                if value is MISSING:
                    missing.append(key)
                else:
                    _settle(self._futures[key], value)
            if not missing:
                return
            keys = missing
        assert self._loop is not None
        self._loop.create_task(self._run(keys))

    async def _run(self, keys: list[K]) -> None:
        try:
            values = list(await self.batch(keys))
            if len(values) != len(keys):
                raise TypeError(f"a batch of {len(keys)} keys gave {len(values)} values")
        except Exception as error:
            self._fail(keys, error)
            return
        except BaseException:
            # Cancelled (the batch's task, or a shared fetch it awaited): the fields waiting on
            # these keys were not, so each gets an error of its own rather than a cancellation.
            self._fail(keys, LoadCancelledError("the load was cancelled before it answered"))
            raise
        futures = self._futures
        for key, value in zip(keys, values, strict=True):
            _settle(futures[key], value)

    def _fail(self, keys: list[K], error: Exception) -> None:
        """Fail `keys` with `error`, and forget them: a later load asks the source again."""
        self.failed = True
        if self._failures is None:
            self._failures = {}
        for key in keys:
            self._failures[key] = error
            _settle(self._futures.pop(key), error)


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if future.done():
        return
    if isinstance(value, Exception):
        future.set_exception(value)
        # Retrieved here: a key nobody awaits any more (its request timed out) is not a
        # "never retrieved" error in the log; whoever awaits it still gets the exception.
        future.exception()
    else:
        future.set_result(value)
