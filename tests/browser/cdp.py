"""Debian's Chromium, headless, driven over the Chrome DevTools Protocol (no driver, no browser
download), with every request for anything but the server under test failed by the browser."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

# As the machine's probe starts it: no first-run, sync or background traffic to Google, whose
# look-ups fail on a closed network anyway.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
)


def chromium() -> str | None:
    """The browser's executable, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab: commands, the events they cause, and the requests it made or was refused."""

    def __init__(self, socket: ClientConnection, origin: str) -> None:
        self._socket = socket
        self._origin = origin
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.requested: list[str] = []
        self.refused: list[str] = []
        self._deciding: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        answer = self._answers[number] = asyncio.get_running_loop().create_future()
        await self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        async with asyncio.timeout(30):
            return await answer

    async def _read(self) -> None:
        async for raw in self._socket:
            message = json.loads(raw)
            if "id" in message:
                answer = self._answers.pop(message["id"])
                if "error" in message:
                    answer.set_exception(RuntimeError(f"CDP: {message['error']}"))
                else:
                    answer.set_result(message.get("result", {}))
            elif message.get("method") == "Fetch.requestPaused":
                task = asyncio.create_task(self._decide(message["params"]))
                self._deciding.add(task)
                task.add_done_callback(self._deciding.discard)

    async def _decide(self, paused: dict[str, Any]) -> None:
        """Let the server's own requests through; fail any other (a CDN, a font site)."""
        url = paused["request"]["url"]
        self.requested.append(url)
        if url.startswith(self._origin + "/"):
            await self.send("Fetch.continueRequest", requestId=paused["requestId"])
        else:
            self.refused.append(url)
            await self.send(
                "Fetch.failRequest", requestId=paused["requestId"], errorReason="BlockedByClient"
            )

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"in the page: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, seconds: float = 30) -> Any:
        """The expression's value once it is truthy (polled), or TimeoutError."""
        async with asyncio.timeout(seconds):
            while not (value := await self.evaluate(expression)):  # noqa: ASYNC110 - a page
                await asyncio.sleep(0.1)
        return value

    async def click(self, selector: str) -> None:
        """A real mouse click at the middle of the first element `selector` finds."""
        box = await self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; const r = e.getBoundingClientRect();"
            " return r.width ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def select_all(self) -> None:
        """Ctrl+A in the focused element."""
        for kind in ("keyDown", "keyUp"):
            await self.send(
                "Input.dispatchKeyEvent",
                type=kind,
                modifiers=2,
                key="a",
                code="KeyA",
                windowsVirtualKeyCode=65,
            )

    async def paste(self, text: str) -> None:
        """A paste of `text` into the focused element: the clipboard event a browser sends
        (typed instead, an editor would close each bracket and quote it opens)."""
        await self.evaluate(
            "(() => { const data = new DataTransfer();"
            f" data.setData('text/plain', {json.dumps(text)});"
            " document.activeElement.dispatchEvent("
            "new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));"
            " })()"
        )

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png")
        image = base64.b64decode(shot["data"])

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image)

        await asyncio.to_thread(write)
        return path

    @contextlib.asynccontextmanager
    async def shot_on_failure(self, path: Path) -> AsyncIterator[None]:
        """A screenshot at `path` if the block fails, to see what the page showed."""
        try:
            yield
        except BaseException as error:
            with contextlib.suppress(Exception):
                await self.screenshot(path)
                error.add_note(f"screenshot of the page: {path}")
            raise

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def browser_page(executable: str, origin: str) -> AsyncIterator[Page]:
    """A headless Chromium tab whose requests outside `origin` fail."""
    # Its helper processes may still be writing the profile as it goes.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        process = await asyncio.create_subprocess_exec(
            executable,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the helpers end with it
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            async with asyncio.timeout(30):
                # Chromium writes its port there once it listens: a file, not an event.
                while not port_file.is_file() or not port_file.read_text().strip():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            port = port_file.read_text().split()[0]
            async with httpx.AsyncClient() as http:
                made = await http.put(f"http://127.0.0.1:{port}/json/new?about:blank")
            target = made.json()["webSocketDebuggerUrl"]
            async with connect(target, max_size=None) as socket:
                page = Page(socket, origin)
                try:
                    await page.send("Fetch.enable", patterns=[{"urlPattern": "*"}])
                    await page.send("Page.enable")
                    yield page
                finally:
                    await page.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
