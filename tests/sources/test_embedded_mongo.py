"""The embedded MongoDB's supervisor: a server that dies is started again, and says so once."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sources.mongo.embedded import _EmbeddedServer
from sources.net import free_port

DEADLINE = 120.0


def _until(condition: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"not within {DEADLINE:g} s: {condition}"
        time.sleep(0.05)


def test_a_restart_that_keeps_failing_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sources.mongo.embedded")
    (tmp_path / "mongo").mkdir()
    server = _EmbeddedServer(tmp_path / "mongo", free_port(), 60.0)
    server.start()
    supervisor = threading.Thread(target=server.supervise, daemon=True)
    supervisor.start()
    try:
        assert server._process is not None
        # Its port taken while it is down: every start fails until the port is free again.
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server._process.kill()
            server._process.wait()
            squatter.bind(("127.0.0.1", server.port))
            squatter.listen()

            def failures() -> int:
                return sum("did not restart" in r.getMessage() for r in caplog.records)

            _until("three failed starts", lambda: failures() >= 3)

        def answering() -> bool:
            return any("answering again" in r.getMessage() for r in caplog.records)

        _until("the server answering again", answering)
    finally:
        server.stop()
        supervisor.join()

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "exited" in warnings[0]
    assert "did not restart" in warnings[1]
