"""`c360 serve` as a process: it stops its embedded stores however it is stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from sources.net import free_port, stop_process


def test_sigterm_stops_the_embedded_mongodb_too(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "C360_DATA_DIR": str(tmp_path)}
    for name in ("C360_DATABASE_URL", "C360_MONGO_URL", "C360_REDIS_URL"):
        env.pop(name, None)
    migrate = [sys.executable, "-m", "api.cli", "migrate"]
    subprocess.run(migrate, env=env, check=True, capture_output=True)
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--no-access-log"]
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "c360 serve did not start"
            assert server.poll() is None, "c360 serve exited"
            time.sleep(0.2)
        children = psutil.Process(server.pid).children(recursive=True)
        mongo = [c for c in children if "secantus" in " ".join(c.cmdline())]
        assert len(mongo) == 1
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        _, alive = psutil.wait_procs(mongo, timeout=20)
        assert alive == [], "the embedded MongoDB outlived c360 serve"
    finally:
        if server.poll() is None:
            stop_process(server)
