"""A coroutine run up to its first wait, so that what guards a wait is armed only for one.

`asyncio.timeout` costs a timer handle, a heap push and its cancellation, and guards nothing
while its block runs without waiting: a cancellation can only land at an await. A small POST's
body is already in uvicorn's buffer when the app reads it, and `{ __typename }` (or any query
whose values are all at hand) executes without waiting at all; arming and disarming a deadline
around each was ~6% of such a request. `started` runs the coroutine to its first wait; only
if it waits is the rest awaited, under the deadline, as the whole would have been.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Done(Generic[T]):
    """A coroutine that ended without waiting, and its value."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


def started(pending: Awaitable[T]) -> Done[T] | Awaitable[T]:
    """`Done` when `pending` is a coroutine that ends without waiting; else what to await for
    the rest of it (an awaitable that is not a coroutine is not started)."""
    if not isinstance(pending, Coroutine):
        return pending
    try:
        waiting_on = pending.send(None)
    except StopIteration as done:
        return Done(done.value)
    return _Resumed(pending, waiting_on)


class _Resumed(Generic[T]):
    """A coroutine run up to its first wait: awaiting this waits on what the coroutine waits
    on (a cancellation reaches the coroutine), then runs the rest of it."""

    __slots__ = ("coroutine", "waiting_on")

    def __init__(self, coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> None:
        self.coroutine = coroutine
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, None, T]:
        coroutine, waiting_on = self.coroutine, self.waiting_on
        while True:
            try:
                yield waiting_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as error:  # the deadline's cancellation: the coroutine gets it
                try:
                    waiting_on = coroutine.throw(error)
                except StopIteration as done:
                    value: T = done.value
                    return value
            else:
                try:
                    waiting_on = coroutine.send(None)
                except StopIteration as done:
                    value = done.value
                    return value
