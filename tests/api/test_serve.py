"""`c360 serve` as a process: its embedded stores, slow clients, proxies, over real sockets."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pymongo
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.source_settings import url_variable
from sources.catalog import VENDORS
from tests.auth import AGENT
from tests.conftest import Simulator
from tests.ws.test_across_instances import server

READ_TIMEOUT = 2
# MongoDB answers it: an external id is looked up in the profiles before anything else.
LOOKUP = """query ($value: String!) {
  customerLookup(externalId: {type: CRM_ID, value: $value}) { __typename }
}"""


@dataclass(frozen=True)
class Served:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path


@contextlib.contextmanager
def serving(tmp_path: Path, *arguments: str, **env: str) -> Iterator[Served]:
    """`c360 serve` over a fresh data directory, with `env` on top; embedded stores for the rest.
    `arguments` are added to the command (`--workers 4`)."""
    environment = {**os.environ, "C360_DATA_DIR": str(tmp_path)}
    for name in ("C360_DATABASE_URL", "C360_MONGO_URL", "C360_REDIS_URL"):
        environment.pop(name, None)
    environment.update(env)
    migrate = [sys.executable, "-m", "api.cli", "migrate"]
    subprocess.run(migrate, env=environment, check=True, capture_output=True)
    log_path = tmp_path / "serve.log"
    with server(environment, log_path, *arguments) as (url, process):
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "c360 serve did not start"
            assert process.poll() is None, f"c360 serve exited: {log_path.read_text()}"
            time.sleep(0.2)
        yield Served(url, int(url.rpartition(":")[2]), process, log_path)


def _embedded_mongo(served: Served) -> psutil.Process | None:
    """The embedded MongoDB process c360 serve runs now (None while there is none alive)."""
    alive = []
    for child in psutil.Process(served.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone, or a zombie no one has reaped
            if "secantus" in " ".join(child.cmdline()):
                alive.append(child)
    assert len(alive) <= 1
    return alive[0] if alive else None


def _reads_mongo(http: httpx.Client) -> bool:
    """Whether a query that MongoDB answers succeeds (a new id each time: never from a cache)."""
    variables = {"value": f"CRM-{uuid.uuid4().hex}"}
    answer = http.post("/graphql", json={"query": LOOKUP, "variables": variables}).json()
    return bool(answer == {"data": {"customerLookup": None}})


def test_sigterm_stops_the_embedded_mongodb_too(tmp_path: Path) -> None:
    with serving(tmp_path) as served:
        mongo = _embedded_mongo(served)
        assert mongo is not None
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=30)
        _, alive = psutil.wait_procs([mongo], timeout=20)
        assert alive == [], "the embedded MongoDB outlived c360 serve"


def test_a_killed_embedded_mongodb_is_restarted(tmp_path: Path) -> None:
    with serving(tmp_path) as served, httpx.Client(base_url=served.url, headers=AGENT) as http:
        assert http.get("/readyz").status_code == 200
        assert _reads_mongo(http)
        killed = _embedded_mongo(served)
        assert killed is not None
        killed.kill()
        deadline = time.monotonic() + 60
        while True:
            mongo = _embedded_mongo(served)
            restarted = mongo is not None and mongo.pid != killed.pid
            # The supervisor notes the restart once its own ping answers, maybe after the app's.
            noted = "the embedded MongoDB is answering again" in served.log_path.read_text()
            if (
                restarted
                and noted
                and http.get("/readyz").status_code == 200
                and _reads_mongo(http)
            ):
                break
            assert time.monotonic() < deadline, served.log_path.read_text()
            time.sleep(0.2)
        log = served.log_path.read_text()
        # One line per change of state.
        assert log.count("the embedded MongoDB exited") == 1, log
        assert log.count("the embedded MongoDB is answering again") == 1, log


@contextlib.contextmanager
def _serving_light(
    tmp_path: Path, mongo_url: str, simulator: Simulator, *arguments: str, **env: str
) -> Iterator[Served]:
    """`c360 serve` over the tests' MongoDB and simulator: nothing embedded to start."""
    vendors = {url_variable(api): simulator.url for api in VENDORS}
    with serving(tmp_path, *arguments, C360_MONGO_URL=mongo_url, **vendors, **env) as served:
        yield served


def _read_answer(sock: socket.socket, trickle: bytes, timeout: float) -> tuple[bytes, float]:
    """Send `trickle` a byte every 0.2 s; what the server answers, and after how long."""
    started = time.monotonic()
    sock.settimeout(0.2)
    answer = b""
    for byte in trickle:
        if time.monotonic() - started > timeout:
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # closed by the server
            break
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    return answer, time.monotonic() - started


@pytest.fixture(scope="module")
def timed(
    tmp_path_factory: pytest.TempPathFactory, mongo_url: str, simulator: Simulator
) -> Iterator[Served]:
    """c360 serve allowing READ_TIMEOUT seconds to read a request."""
    env = {"C360_REQUEST_READ_TIMEOUT": str(READ_TIMEOUT)}
    with _serving_light(tmp_path_factory.mktemp("timed"), mongo_url, simulator, **env) as served:
        yield served


# Well past the read timeout, and short of the 35 s the finding saw.
GIVE_UP = 20.0


def test_slow_headers_get_408(timed: Served) -> None:
    with socket.create_connection(("127.0.0.1", timed.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: c360\r\n")
        answer, elapsed = _read_answer(sock, b"X-Slow: 1\r\n" * 1000, GIVE_UP)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert elapsed < GIVE_UP


def test_a_slow_body_gets_408(timed: Served) -> None:
    with socket.create_connection(("127.0.0.1", timed.port)) as sock:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: c360\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        answer, elapsed = _read_answer(sock, b" " * 100_000, GIVE_UP)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()
    assert elapsed < GIVE_UP


def test_a_request_sent_in_time_is_answered(timed: Served) -> None:
    body = b'{"query": "{ __typename }"}'
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: c360\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", timed.port)) as sock:
        # In pieces, each well within the timeout: the same connection answers twice.
        for _ in range(2):
            sock.sendall(head)
            time.sleep(0.3)
            sock.sendall(b"\r\n" + body[:10])
            time.sleep(0.3)
            sock.sendall(body[10:])
            sock.settimeout(READ_TIMEOUT * 5)
            answer = _response(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            assert answer.endswith(b'{"data":{"__typename":"Query"}}'), answer


def _response(sock: socket.socket) -> bytes:
    """One whole response (with a Content-Length) read from `sock`."""
    answer = b""
    while True:
        head, separator, body = answer.partition(b"\r\n\r\n")
        if separator:
            length = head.lower().partition(b"content-length: ")[2].partition(b"\r\n")[0]
            if len(body) >= int(length):
                return answer
        chunk = sock.recv(4096)
        assert chunk, f"closed after {answer!r}"
        answer += chunk


def _addresses_refused(served: Served) -> list[int]:
    """Statuses of anonymous requests, each claiming another address in X-Forwarded-For."""
    statuses = []
    for index in range(5):
        response = httpx.post(
            f"{served.url}/graphql",
            json={"query": "{ __typename }"},
            headers={"x-forwarded-for": f"203.0.113.{index + 1}"},
        )
        statuses.append(response.status_code)
    return statuses


def test_forwarded_for_is_ignored_unless_from_a_trusted_proxy(
    tmp_path: Path, mongo_url: str, simulator: Simulator
) -> None:
    limit = {"C360_RATE_LIMIT_IP": "3/minute"}
    with _serving_light(tmp_path / "default", mongo_url, simulator, **limit) as served:
        # Every request is counted against 127.0.0.1, whatever it claims.
        assert _addresses_refused(served) == [200, 200, 200, 429, 429]
    trusted = {**limit, "C360_TRUSTED_PROXIES": '["127.0.0.1"]'}
    with _serving_light(tmp_path / "trusted", mongo_url, simulator, **trusted) as served:
        # From a trusted proxy, each forwarded address has an allowance of its own.
        assert _addresses_refused(served) == [200] * 5


def _total(exposition: str, sample: str, **labels: str) -> float:
    return sum(
        found.value
        for family in text_string_to_metric_families(exposition)
        for found in family.samples
        if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_add_up_across_four_workers(
    tmp_path: Path, mongo_url: str, simulator: Simulator
) -> None:
    sent = 120
    with _serving_light(tmp_path, mongo_url, simulator, "--workers", "4") as served:
        workers: set[str] = set()
        for _ in range(sent):
            # A new connection each: the kernel spreads connections, not requests, over workers.
            with httpx.Client(headers={**AGENT, "connection": "close"}) as http:
                answer = http.post(
                    f"{served.url}/graphql",
                    json={"query": "query Probe { __typename }"},
                )
            assert answer.status_code == 200
            # A request id made by c360 starts with its process's prefix.
            workers.add(answer.headers["x-request-id"].rsplit("-", 1)[0])
        assert len(workers) > 1, "every request reached one worker: nothing was summed"

        def graphql_total() -> tuple[float, float]:
            with httpx.Client(headers={"connection": "close"}) as http:
                text = http.get(f"{served.url}/metrics").text
            return (
                _total(text, "c360_http_requests_total", path="/graphql"),
                _total(text, "c360_graphql_operation_duration_seconds_count", operation="Probe"),
            )

        # Each worker's snapshot is at most a second old; any worker may answer the scrape.
        deadline = time.monotonic() + 15
        while (totals := graphql_total()) != (sent, sent):
            assert time.monotonic() < deadline, f"totals {totals}, {sent} sent"
            time.sleep(0.3)


@dataclass
class _Stopped:
    answers: list[httpx.Response | httpx.HTTPError]
    exited_after: float  # seconds from SIGTERM to the process's exit


def _sigterm_in_flight(
    tmp_path: Path, mongo_url: str, vendor: Simulator, *, grace: int, vendor_ms: int
) -> _Stopped:
    """SIGTERM to `c360 serve` while a request waits `vendor_ms` on the loyalty API; checks
    that new connections are refused while the request is still in flight."""
    database = f"c360_test_{uuid.uuid4().hex[:12]}"
    env = {
        "C360_MONGO_DATABASE": database,
        # Slower than the vendor will be, so the request waits on it rather than failing.
        "C360_LOYALTY_TIMEOUT": "30",
        "C360_SHUTDOWN_GRACE_SECONDS": str(grace),
    }
    try:
        with _serving_light(tmp_path, mongo_url, vendor, **env) as served:
            seeding = {**os.environ, "C360_DATA_DIR": str(tmp_path), "C360_MONGO_URL": mongo_url}
            seeding.update(env)
            seeding.pop("C360_DATABASE_URL", None)
            seed = [sys.executable, "-m", "api.cli", "seed", "--customers", "2", "--quiet"]
            subprocess.run(seed, env=seeding, check=True, capture_output=True)
            vendor.set_faults("loyalty", latency_ms=vendor_ms)
            answers: list[httpx.Response | httpx.HTTPError] = []

            def ask() -> None:
                try:
                    answers.append(
                        httpx.post(
                            f"{served.url}/graphql",
                            json={"query": '{ customer(id: "1") { id loyalty { tier } } }'},
                            headers=AGENT,
                            timeout=60,
                        )
                    )
                except httpx.HTTPError as error:
                    answers.append(error)

            asking = threading.Thread(target=ask)
            asking.start()
            # In flight: c360 is waiting on the loyalty API (its connection to it is open).
            vendor_port = int(vendor.url.rsplit(":", 1)[1])
            server = psutil.Process(served.process.pid)
            deadline = time.monotonic() + 15
            while not any(
                c.raddr and c.raddr.port == vendor_port and c.status == psutil.CONN_ESTABLISHED
                for c in server.net_connections(kind="tcp")
            ):
                assert time.monotonic() < deadline, "the request never reached the vendor"
                time.sleep(0.05)
            served.process.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            # New connections are refused while the request in flight is still waiting.
            deadline = stopped_at + 5
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", served.port), timeout=1):
                        pass
                except OSError:
                    break
                assert time.monotonic() < deadline, "still accepting after SIGTERM"
                time.sleep(0.05)
            assert asking.is_alive(), "the request ended before the listener closed"
            served.process.wait(timeout=60)
            exited_after = time.monotonic() - stopped_at
            asking.join(timeout=60)
        return _Stopped(answers, exited_after)
    finally:
        with pymongo.MongoClient(mongo_url) as mongo:
            mongo.drop_database(database)


def test_sigterm_finishes_the_request_in_flight_and_accepts_no_more(
    tmp_path: Path, mongo_url: str, vendor_faults: Simulator
) -> None:
    stopped = _sigterm_in_flight(tmp_path, mongo_url, vendor_faults, grace=20, vendor_ms=3000)
    (answer,) = stopped.answers
    assert isinstance(answer, httpx.Response) and answer.status_code == 200
    body = answer.json()
    assert "errors" not in body and body["data"]["customer"]["id"] == "1", body


def test_a_request_still_running_after_the_grace_period_is_cut_short(
    tmp_path: Path, mongo_url: str, vendor_faults: Simulator
) -> None:
    stopped = _sigterm_in_flight(tmp_path, mongo_url, vendor_faults, grace=1, vendor_ms=30_000)
    # Stopped after its second of grace, not after the vendor's 30 s.
    assert stopped.exited_after < 20, stopped.exited_after
    (answer,) = stopped.answers
    assert not (isinstance(answer, httpx.Response) and answer.status_code == 200), answer
