"""Where a stalled test waits: every asyncio task's stack, printed before its timeout fails it.

pytest-timeout prints each thread's stack. When a test stalls because a task waits for
something that never comes, the event loop is idle and those stacks show only its selector;
the tasks' own stacks say which await never returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import threading
import traceback
import types
from collections.abc import Iterator


def task_stacks(loop: asyncio.AbstractEventLoop) -> str:
    """Every pending task of `loop`, each with the chain of awaits it is suspended in."""
    out = io.StringIO()
    for task in asyncio.all_tasks(loop):
        out.write(f"--- {task!r}\n")
        frames = traceback.StackSummary.extract(
            (frame, frame.f_lineno) for frame in awaits(task.get_coro())
        )
        out.writelines(frames.format())
    return out.getvalue()


def awaits(awaitable: object) -> Iterator[types.FrameType]:
    # Task.print_stack shows a suspended coroutine's own frame only; what it awaits is
    # in cr_await (gi_yieldfrom for a generator-based awaitable), down to the innermost.
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is not None:
            yield frame
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)


@contextlib.contextmanager
def tasks_shown_after(loop: asyncio.AbstractEventLoop, seconds: float, what: str) -> Iterator[None]:
    """Print `loop`'s task stacks if this block is still running after `seconds`."""

    def show() -> None:  # on the loop's own thread: its tasks are not moving under it
        sys.stdout.write(
            f"\n+++ {what} still running after {seconds:g} s; its event loop's tasks:\n"
            + task_stacks(loop)
        )

    def from_timer() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
            loop.call_soon_threadsafe(show)

    timer = threading.Timer(seconds, from_timer)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
