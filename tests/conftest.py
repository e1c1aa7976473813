"""Session fixtures: real stores, disposable, one set per SQL backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pymongo.uri_parser import parse_uri
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from api.app import create_app
from api.connections import Connections
from api.settings import Settings
from migrations.runner import upgrade
from sources.catalog import VENDORS
from sources.mongo.client import create_client as create_mongo_client
from sources.mongo.queries import Database
from sources.net import free_port
from sources.seed.loader import seed
from sources.sql.engine import create_engine
from sources.thirdparty.simulator import VendorStore, running_simulator
from tests import services
from tests.auth import AGENT
from tests.stalls import tasks_shown_after

SEEDED_CUSTOMERS = 30

# Every query the suite sends runs through c360's engine and through graphql-core, and is
# refused where their answers differ (`api.execution`): the suite is the differential test.
os.environ.setdefault("C360_ENGINE", "differential")
# A developer's own OpenTelemetry settings would turn tracing on in every app the tests make,
# and send the tests' spans to their collector: the tracing tests configure their own.
for _name in [n for n in os.environ if n.startswith("OTEL_")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
async def session_loop() -> asyncio.AbstractEventLoop:
    """The event loop every test and fixture of the session runs on."""
    return asyncio.get_running_loop()


@pytest.fixture(autouse=True)
def _a_stalled_test_shows_its_tasks(
    request: pytest.FixtureRequest, session_loop: asyncio.AbstractEventLoop
) -> Iterator[None]:
    """Print where every task waits when a test is at 80% of its timeout (see tests.stalls)."""
    marker = request.node.get_closest_marker("timeout")
    if marker is not None and (marker.args or "timeout" in marker.kwargs):
        timeout = float(marker.args[0] if marker.args else marker.kwargs["timeout"])
    else:  # --timeout, else PYTEST_TIMEOUT or the ini file's, as pytest-timeout reads them
        timeout = float(
            request.config.getoption("timeout", None)
            or os.environ.get("PYTEST_TIMEOUT")
            or request.config.getini("timeout")
            or 0
        )
    if timeout <= 0:
        yield
        return
    with tasks_shown_after(session_loop, 0.8 * timeout, request.node.nodeid):
        yield


# pymongo's async driver leaves a socket it was connecting unclosed when the task connecting
# is cancelled: its own monitors are, by AsyncMongoClient.close (PYTHON-5867, open in 4.20).
# CPython closes the socket when it is collected, with a ResourceWarning that would fail
# whichever test is running then. Only sockets to the session's MongoDB server are excused.
_mongo_ports: set[int] = set()


def _excuse_abandoned_mongo_sockets() -> None:
    for port in _mongo_ports:
        warnings.filterwarnings(
            "ignore",
            message=rf"unclosed <socket\.socket .*raddr=\('[^']*', {port}(, \d+, \d+)?\)>",
            category=ResourceWarning,
        )


# The same bug, for a socket whose connection never completed: it has no peer address to tell
# whose it was, so any loopback socket that never connected is excused. Seen when a client was
# closed (pymongo's) or a request cancelled (aiohttp's, at shutdown) while connecting. A mark
# rather than a filter set by a fixture: the socket may be collected while a session fixture
# sets up, before any function fixture runs.
NEVER_CONNECTED = pytest.mark.filterwarnings(
    r"ignore:unclosed <socket\.socket [^>]*laddr=\('127\.0\.0\.1', \d+\)>$:ResourceWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(NEVER_CONNECTED)


@pytest.fixture(autouse=True)
def _abandoned_mongo_sockets_are_excused() -> None:
    """Within each test's own warning filters: see `_mongo_ports`."""
    _excuse_abandoned_mongo_sockets()


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MongoDB when C360_TEST_MONGO_URL is set, else a fresh embedded SecantusDB."""
    with contextlib.ExitStack() as stack:
        if services.MONGO_URL:
            url = services.MONGO_URL
        else:
            from sources.mongo.embedded import embedded_mongo

            url = stack.enter_context(embedded_mongo(tmp_path_factory.mktemp("mongo") / "data"))
        _mongo_ports.update(port for _, port in parse_uri(url)["nodelist"])
        _excuse_abandoned_mongo_sockets()  # the test that asked first has its filters already
        yield url


@dataclass(frozen=True)
class Simulator:
    url: str
    store_path: Path

    def set_faults(
        self, vendor: str | None, *, latency_ms: float = 0, failure_rate: float = 0
    ) -> None:
        """Make a vendor slow or failing (None: both vendors)."""
        response = httpx.put(
            f"{self.url}/_simulator/faults",
            json={"vendor": vendor, "latencyMs": latency_ms, "failureRate": failure_rate},
        )
        response.raise_for_status()


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    store_path = tmp_path_factory.mktemp("vendors") / "vendors.sqlite"
    with running_simulator(store_path) as url:
        yield Simulator(url, store_path)


@pytest.fixture
def vendor_faults(simulator: Simulator) -> Iterator[Simulator]:
    """The simulator, restored to healthy after the test whatever it injected."""
    yield simulator
    simulator.set_faults(None)


@pytest.fixture(scope="session")
def vendor_store(simulator: Simulator) -> Iterator[VendorStore]:
    store = VendorStore(simulator.store_path)
    yield store
    store.close()


def _asyncpg_url(url: str) -> str:
    parsed = make_url(url)
    return str(parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False))


@contextlib.asynccontextmanager
async def _postgres_database() -> AsyncIterator[str]:
    """A freshly created PostgreSQL database, dropped afterwards."""
    if not services.POSTGRES_URL:
        services.unavailable("PostgreSQL", "C360_TEST_POSTGRES_URL is not set")
    admin_url = _asyncpg_url(services.POSTGRES_URL or "")
    name = f"c360_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OSError as error:
        await admin.dispose()
        services.unavailable("PostgreSQL", f"cannot connect: {error}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def sql_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A migrated, empty SQL database: a SQLite file, then a fresh PostgreSQL database."""
    async with migrated_database(request.param, tmp_path_factory) as url:
        yield url


@contextlib.asynccontextmanager
async def migrated_database(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A migrated, empty SQL database of one backend (`sqlite` or `postgresql`)."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sql") / "c360.sqlite"
        url = f"sqlite+aiosqlite:///{path}"
        await asyncio.to_thread(upgrade, url)
        yield url
        return
    async with _postgres_database() as url:
        await asyncio.to_thread(upgrade, url)
        yield url


@pytest.fixture
async def own_sqlite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncEngine]:
    """An engine over a migrated SQLite database of the test's own (no seed)."""
    async with migrated_database("sqlite", tmp_path_factory) as url:
        engine = create_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture
async def own_mongo(connections: Connections) -> AsyncIterator[Database]:
    """A MongoDB database of the test's own, on the session's server, dropped afterwards."""
    name = f"c360_own_{uuid.uuid4().hex[:12]}"
    try:
        yield connections.mongo[name]
    finally:
        await connections.mongo.drop_database(name)


@pytest.fixture(scope="session")
async def settings(
    sql_url: str,
    mongo_url: str,
    simulator: Simulator,
    vendor_store: VendorStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Settings]:
    """Settings over seeded stores: SQL per backend, its own MongoDB database, the simulator."""
    resolved = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path_factory.mktemp("data"),
        database_url=sql_url,
        mongo_url=mongo_url,
        mongo_database=f"c360_test_{uuid.uuid4().hex[:12]}",
        per_source={
            # Every vendor API is the simulator. Generous timeouts: the simulator shares this
            # process (and its GIL) with the app under test, and a batch of 150 shipments on
            # a busy machine took over 0.5 s once in CI.
            **{api.name: {"url": simulator.url, "timeout": 2.0} for api in VENDORS},
            # The default, 2 s: at 1 s a fresh app's first read gave up finding the embedded
            # MongoDB (server selection gets half) on a busy machine, and an answer with an
            # error was not kept by the response cache test expecting a hit.
            "mongo": {"timeout": 2.0},
        },
        # Most tests count source round trips: the cache has tests (and apps) of its own.
        cache_enabled=False,
    )
    engine = create_engine(sql_url)
    mongo = create_mongo_client(mongo_url, timeout=30)
    try:
        await seed(
            engine=engine,
            db=mongo[resolved.mongo_database],
            vendors=vendor_store,
            customers=SEEDED_CUSTOMERS,
            progress=False,
        )
        yield resolved
        await mongo.drop_database(resolved.mongo_database)
    finally:
        await mongo.close()
        await engine.dispose()


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """Another app over `settings` (lifespan running) and an in-process client of it."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://c360.test", headers=AGENT
        ) as http:
            yield application, http


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The app with its lifespan running (connections open)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def connections(app: Starlette) -> Connections:
    opened: Connections = app.state.connections
    return opened


@pytest.fixture(scope="session")
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process HTTP client of the app (no sockets), acting as an agent."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://c360.test", headers=AGENT
    ) as http:
        yield http


@contextlib.asynccontextmanager
async def served_over_own_stores(
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    name: str,
    customers: int,
    **update: Any,
) -> AsyncIterator[tuple[Settings, str]]:
    """c360 over SQL and MongoDB stores of its own (the settings' SQL backend), seeded with the
    first `customers` of the demo data (the generator is sequential: they are the customers
    `make run` seeds), served on a local port; yields its settings and base URL. The vendor
    simulator keeps the session's loyalty and shipment data, made by the same generator."""
    backend = settings.database_url.split(":", 1)[0].split("+", 1)[0]
    async with migrated_database(backend, tmp_path_factory) as url:
        own = settings.model_copy(
            update={
                "database_url": url,
                "mongo_database": f"c360_{name}_{uuid.uuid4().hex[:12]}",
                "data_dir": tmp_path_factory.mktemp(name),
                **update,
            }
        )
        engine = create_engine(url)
        mongo = create_mongo_client(own.mongo_url, timeout=30)
        try:
            db = mongo[own.mongo_database]
            await seed(engine=engine, db=db, vendors=None, customers=customers, progress=False)
            application = create_app(own)
            async with application.router.lifespan_context(application), serving(application) as u:
                yield own, u
            await mongo.drop_database(own.mongo_database)
        finally:
            await mongo.close()
            await engine.dispose()


@pytest.fixture(scope="session")
async def live_server(app: Starlette) -> AsyncIterator[str]:
    """The app served by uvicorn on a real local port; yields its base URL."""
    async with serving(app) as url:
        yield url


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """`app` (its lifespan run by the caller) served by uvicorn on a real local port."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def only_these_processes_relay(connections: Connections) -> AsyncIterator[None]:
    """Pause the in-test app's outbox relay: it shares the stores with the apps or processes
    under test and would otherwise publish their outbox rows to its own in-process bus."""
    await connections.relay.stop()
    yield
    connections.relay.start()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis of C360_TEST_REDIS_URL."""
    if not services.REDIS_URL:
        services.unavailable("Redis", "C360_TEST_REDIS_URL is not set")
    return services.REDIS_URL or ""


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.LocalCluster]:
    """A Redis Cluster of the session's own: three masters, a replica each, on free ports."""
    with services.redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


# The real Redis servers a store shared by instances is tested on: the test Redis, and the
# session's Redis Cluster.
REDIS_KINDS = ["redis", "redis-cluster"]


def redis_url_of(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of the test Redis (`redis`) or of the session's cluster (`redis-cluster`)."""
    if kind == "redis-cluster":
        cluster: services.LocalCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture(params=REDIS_KINDS)
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """The test Redis, then the session's Redis Cluster."""
    return redis_url_of(request, request.param)


@pytest.fixture(params=["memory", *REDIS_KINDS])
def cached_settings(
    request: pytest.FixtureRequest, settings: Settings, redis_namespace: str
) -> Settings:
    """The test settings with the cache on: in-process, on the test Redis, on the cluster."""
    # A generous Redis timeout: a busy test machine must not trip the breaker.
    update: dict[str, Any] = {
        "cache_enabled": True,
        "cache_namespace": redis_namespace,
        "redis_timeout": 1.0,
    }
    if request.param != "memory":
        update["redis_url"] = redis_url_of(request, request.param)
    return settings.model_copy(update=update)


@pytest.fixture
def redis_port() -> int:
    """A free port for a Redis the test starts and kills itself (`tests.services.own_redis`)."""
    return free_port()


@pytest.fixture
def flaky_settings(settings: Settings, redis_port: int) -> Settings:
    """The test settings with the cache on the test's own Redis (on `redis_port`), its calls
    bounded short and its breaker quick: for the tests that kill that Redis."""
    return settings.model_copy(
        update={
            "cache_enabled": True,
            "redis_url": f"redis://127.0.0.1:{redis_port}/0",
            "redis_timeout": 0.2,
            "redis_breaker_seconds": 0.3,
        }
    )


@pytest.fixture
def shared_settings(settings: Settings, redis_url: str, redis_namespace: str) -> Settings:
    """The test settings with the cache on the test Redis: apps made with them are instances
    sharing it."""
    return settings.model_copy(
        update={
            "cache_enabled": True,
            "redis_url": redis_url,
            "cache_namespace": redis_namespace,
            "redis_timeout": 1.0,  # generous: a busy test machine must not trip the breaker
        }
    )


@pytest.fixture
async def redis_namespace() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    namespace = f"c360test-{uuid.uuid4().hex[:12]}"
    yield namespace
    if services.REDIS_URL:
        from redis.asyncio import Redis

        client = Redis.from_url(services.REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
