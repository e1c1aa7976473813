"""Node.js for the tests that need it: the graphql-http audit and the federation gateway.

Each node tool is a directory with a package.json and a package-lock.json pinning exact
versions; `npm ci` installs them there when they are missing. Node processes are awaited through
asyncio because the server they talk to (`live_server`) runs in the test's own event loop: a
blocking wait would stall it and the node side would never get an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from tests import services

INSTALL_TIMEOUT = 240.0
START_TIMEOUT = 60.0
# What a node server script prints once it listens, followed by {"url": ...}.
LISTENING = b"LISTENING "


async def run(*command: str, cwd: Path, limit: float) -> tuple[int, str, str]:
    """Run a command to its end without blocking the event loop: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(limit):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{' '.join(command)} did not finish within {limit:.0f}s") from None
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def node_with_packages(directory: Path, probe: str, purpose: str) -> str:
    """The node executable, with `directory`'s pinned packages installed (`npm ci` when the
    package `probe` is missing). Skips, or fails where services are required, without node."""
    node = shutil.which("node")
    if node is None:
        services.unavailable("node", f"not on PATH; {purpose} runs on Node.js")
    assert node is not None
    if not (directory / "node_modules" / probe).is_dir():
        npm = shutil.which("npm")
        if npm is None:
            services.unavailable("npm", f"not on PATH; needed to install {directory}")
        assert npm is not None
        code, out, err = await run(
            npm, "ci", "--no-audit", "--no-fund", cwd=directory, limit=INSTALL_TIMEOUT
        )
        assert code == 0, f"npm ci in {directory} failed ({code}):\n{out}\n{err}"
    return node


@contextlib.asynccontextmanager
async def node_server(node: str, script: str, *args: str, cwd: Path) -> AsyncIterator[str]:
    """Run a node server script that prints `LISTENING {"url": ...}` once it listens; yield
    that URL, and stop the process afterwards. Its output is read all along (a pipe
    nobody reads fills up and stalls the writer) and shown when it fails to start."""
    process = await asyncio.create_subprocess_exec(
        node,
        script,
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    output: list[bytes] = []
    drains = [asyncio.create_task(_collect(process.stderr, output))]
    try:
        try:
            async with asyncio.timeout(START_TIMEOUT):
                announced = await _announcement(process.stdout, output)
        except TimeoutError:
            announced = None
        if announced is None:
            await asyncio.sleep(0.2)  # let stderr say why
            raise AssertionError(
                f"node {script} did not start listening within {START_TIMEOUT:.0f}s:\n"
                + b"".join(output).decode(errors="replace")
            )
        drains.append(asyncio.create_task(_collect(process.stdout, output)))
        yield announced
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        for drain in drains:
            drain.cancel()
        await asyncio.gather(*drains, return_exceptions=True)


async def _announcement(stream: asyncio.StreamReader, output: list[bytes]) -> str | None:
    """The URL of the `LISTENING {"url": ...}` line, or None when the output ends before it."""
    async for line in stream:
        if line.startswith(LISTENING):
            url: str = json.loads(line.removeprefix(LISTENING))["url"]
            return url
        output.append(line)
    return None


async def _collect(stream: asyncio.StreamReader, into: list[bytes]) -> None:
    """Read a stream to its end, keeping its last lines."""
    async for line in stream:
        into.append(line)
        del into[:-200]
