"""Subscribers told where to resume before a stopping process closes their sockets.

On SIGTERM (or Ctrl-C) uvicorn stops accepting and at once closes every WebSocket with 1012.
A subscriber then knows only that it must reconnect; which event it last received is its own
to remember. So a served process answers the signal first itself: the hub ends every
subscription (`Hub.end_subscriptions`), each sends its subscriber a SHUTTING_DOWN error whose
`resumeAfter` is the last event id it delivered, and once those messages are sent (or after
`TELL_SECONDS`) uvicorn's own handler runs and the shutdown goes on as before. A second
signal goes straight to uvicorn.

Only `c360 serve`'s app does this (`create_app(served=True)`): a signal handler belongs to the
process, and an app under test shares its process with the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from api.graphql_ws import operations_running
from sources.events.hub import Hub

log = logging.getLogger(__name__)

# At most this long between the signal and uvicorn's shutdown: the subscriptions' last
# messages are small and local, so they are sent in milliseconds unless a socket is stuck.
TELL_SECONDS = 2.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def subscribers_told_first(hub: Hub) -> Iterator[None]:
    """While it lasts, SIGTERM and SIGINT end the hub's subscriptions before uvicorn's
    handler (the one installed when it began) sees the signal."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    # Set in the handler itself: a second signal, even one before the loop has run the first
    # one's telling, goes straight on, and the telling then does not pass its own on as well
    # (uvicorn would take a late second SIGINT for "force exit").
    passed_on: list[int] = []
    telling: list[bool] = []

    def then(sig: int, frame: FrameType | None) -> None:
        passed_on.append(sig)
        handler = previous[sig]
        if callable(handler):
            handler(sig, frame)
        elif handler in (signal.SIG_DFL, None):
            signal.signal(sig, signal.SIG_DFL)  # what it would have done: end the process
            signal.raise_signal(sig)

    def on_signal(sig: int, frame: FrameType | None) -> None:
        if telling:
            then(sig, frame)  # a second signal: no more waiting
            return
        telling.append(True)
        # A signal handler may run between any two bytecodes of the loop's own work: the
        # telling starts from the loop, as the loop's documentation asks of such callers.
        loop.call_soon_threadsafe(lambda: loop.create_task(tell(sig, frame)))

    async def tell(sig: int, frame: FrameType | None) -> None:
        try:
            await _end_subscriptions(hub)
        except Exception:
            log.exception("ending the subscriptions before stopping failed")
        finally:
            if not passed_on:  # else a later signal already went on, alone
                then(sig, frame)

    for sig in _SIGNALS:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for number, handler in previous.items():
            # Only where ours still stands: uvicorn, stopping, may already have put back the
            # handlers it found, which are not ours to replace.
            if signal.getsignal(number) is on_signal:
                signal.signal(number, _restorable(handler))


async def _end_subscriptions(hub: Hub) -> None:
    """End every subscription, and wait (at most TELL_SECONDS) until each has sent its last
    message: its operation is gone from its socket's handler once it has."""
    count = hub.subscribers
    hub.end_subscriptions()
    if count:
        log.info("stopping: telling %d subscription(s) where to resume", count)
    # Also while WebSocket operations run: one still being admitted is refused by the hub
    # now, and its SHUTTING_DOWN must go out before the socket closes.
    deadline = asyncio.get_running_loop().time() + TELL_SECONDS
    while hub.subscribers or operations_running():
        if asyncio.get_running_loop().time() > deadline:
            log.warning("stopping: %d subscription(s) not told in time", hub.subscribers)
            return
        await asyncio.sleep(0.01)


def _restorable(handler: Any) -> Callable[..., Any] | int:
    """A handler `signal.getsignal` gave, as `signal.signal` takes it back (None: default)."""
    return signal.SIG_DFL if handler is None else handler
