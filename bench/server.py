"""Run c360 (and the vendor simulator) as separate processes, and watch them."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from api.settings import Settings
from api.source_settings import url_variable
from sources.catalog import VENDORS
from sources.net import free_port, stop_process

READY_TIMEOUT = 120.0
_TRIPS = re.compile(r'^c360_source_round_trips_total\{source="(\w+)"\} (\S+)$', re.M)
_CACHE = re.compile(r'^c360_cache_events_total\{event="(hit|miss)",source="\w+"\} (\S+)$', re.M)
_ANSWERS = re.compile(r'^c360_response_cache_events_total\{event="(hit|miss)"\} (\S+)$', re.M)
_ANSWERED = re.compile(
    r'^c360_http_requests_total\{path="/(?:graphql|events)",status="\d+"\} (\S+)$', re.M
)


@dataclass
class Service:
    """A running c360 server: its URL and its process (with any worker children)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def counters(self) -> dict[str, float]:
        """The server's own counters from /metrics: round trips per source, `requests` (GraphQL
        and ingestion requests answered), `cache_hit` / `cache_miss` over all sources, and the
        response cache's `answer_hit` / `answer_miss`."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        counters = {source: float(value) for source, value in _TRIPS.findall(text)}
        counters["requests"] = sum(float(v) for v in _ANSWERED.findall(text))
        for event in ("hit", "miss"):
            counters[f"cache_{event}"] = sum(
                float(v) for e, v in _CACHE.findall(text) if e == event
            )
            counters[f"answer_{event}"] = sum(
                float(v) for e, v in _ANSWERS.findall(text) if e == event
            )
        return counters

    def settled_counters(self) -> dict[str, float]:
        """The counters once the requests still in flight when wrk stopped have finished."""
        previous = self.counters()
        while True:
            time.sleep(0.2)
            current = self.counters()
            if current == previous:
                return current
            previous = current

    def processes(self) -> list[psutil.Process]:
        """The server and its uvicorn workers; not the embedded MongoDB it may have started,
        whose memory is the store's, not c360's."""
        try:
            parent = psutil.Process(self.process.pid)
            family = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        return [p for p in family if "secantus" not in " ".join(_cmdline(p))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return [str(part) for part in process.cmdline()]
    except psutil.Error:
        return []


@dataclass
class PeakRss:
    """Samples the resident memory of a service's processes; `peak_mb` is the highest sum."""

    service: Service
    interval: float = 0.1
    peak_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0
            for process in self.service.processes():
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak_bytes = max(self.peak_bytes, total)

    @contextlib.contextmanager
    def watching(self) -> Iterator[PeakRss]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, path: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{url} exited with code {process.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url}{path} was not ready within {READY_TIMEOUT}s; see {log}")


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process, timeout=20)


@contextlib.contextmanager
def running_service(
    settings: Settings, *, workers: int, log_dir: Path, traces_to: str | None = None
) -> Iterator[Service]:
    """c360 serving the settings' stores in its own process, uvicorn with uvloop and httptools,
    exporting spans to the OTLP/HTTP collector at `traces_to` when given.

    When the vendor APIs are the bundled simulator, it runs in a process of its own too, as a
    real vendor would, so its work is not counted as c360's.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "C360_DATA_DIR": str(settings.data_dir),
        # The bench is one principal on one address: limits sized for real clients would
        # turn it away. Rate limiting stays on, so its per-request cost is still measured.
        "C360_RATE_LIMIT_PRINCIPAL": "100000000/minute",
        "C360_RATE_LIMIT_IP": "100000000/minute",
        # The subscriptions workload's thousands of subscribers are all the bench principal.
        "C360_LIMIT_SUBSCRIPTIONS_PER_PRINCIPAL": "1000000",
    }
    if traces_to is not None:
        env["C360_OTEL_EXPORTER_OTLP_ENDPOINT"] = traces_to
    else:
        # Off, as the report says, whatever the shell's OTEL_* variables say.
        env["OTEL_SDK_DISABLED"] = "true"
    c360 = [sys.executable, "-m", "api.cli"]
    with contextlib.ExitStack() as stack:
        simulated = settings.simulated_vendors()
        if simulated:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            simulator_log = log_dir / "simulator.log"
            process = stack.enter_context(
                _process([*c360, "simulator", "--port", str(port)], env, simulator_log)
            )
            _wait_ready(url, process, simulator_log, "/healthz")
            env.update({url_variable(api): url for api in VENDORS if api.name in simulated})
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = log_dir / "server.log"
        process = stack.enter_context(
            _process(
                [
                    *c360,
                    "serve",
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                env,
                log,
            )
        )
        _wait_ready(url, process, log, "/readyz")
        yield Service(url=url, process=process, log=log)
