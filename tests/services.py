"""The test services: which real servers this run uses, and whether they are mandatory.

C360_TEST_POSTGRES_URL, C360_TEST_REDIS_URL and C360_TEST_MONGO_URL name real servers; with
C360_TEST_REQUIRE_SERVICES=1 a missing or unreachable one fails the run instead of skipping.
A Redis Cluster is always the tests' own (`redis_cluster`): redis-server and redis-cli started
here, on free ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

POSTGRES_URL = os.environ.get("C360_TEST_POSTGRES_URL") or None
REDIS_URL = os.environ.get("C360_TEST_REDIS_URL") or None
MONGO_URL = os.environ.get("C360_TEST_MONGO_URL") or None
REQUIRED = os.environ.get("C360_TEST_REQUIRE_SERVICES") == "1"


def unavailable(service: str, reason: str) -> None:
    """Skip, or fail when services are required (CI), because `service` cannot be used."""
    message = f"{service}: {reason}"
    if REQUIRED:
        pytest.fail(f"{message} (C360_TEST_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def own_redis(port: int, keep_in: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis server of the test's own on `port` (never the shared one), killed on exit.

    Nothing is kept on disk, unless `keep_in` names a directory: then every write is in its
    append-only file before Redis answers, and a server started again there has it all back.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server", "not on PATH; outage tests run their own Redis")
    persistence = (
        ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(keep_in)]
        if keep_in is not None
        else ["--appendonly", "no"]
    )
    process = subprocess.Popen(
        [binary or "", "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


# How long a node may go unheard before the others fail it over: short, so the kill-a-master
# test waits seconds, not Redis's default 15 s; not so short that a busy machine fails a
# healthy node.
CLUSTER_NODE_TIMEOUT_MS = 2000
# The most any step of starting a cluster may take (processes up, create, in sync).
CLUSTER_START_SECONDS = 30.0


@dataclass
class LocalCluster:
    """A Redis Cluster of the tests' own: `masters` masters with one replica each."""

    directory: Path
    ports: list[int]
    # Each node's cluster bus port, chosen free too (Redis's own choice, port + 10000, may be
    # taken, or past 65535).
    bus_ports: dict[int, int]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """c360's URL of the cluster, naming every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self, port: int) -> None:
        """Start (or start again, with its nodes.conf: it rejoins) the node on `port`."""
        running = self.processes.get(port)
        if running is not None and running.poll() is None:
            raise RuntimeError(f"the cluster node on {port} is running already")
        binary = shutil.which("redis-server") or "redis-server"
        self.processes[port] = subprocess.Popen(
            [
                binary,
                *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
                *("--save", "", "--appendonly", "no"),
                *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
                *("--cluster-port", str(self.bus_ports[port])),
                *("--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS)),
                # A dead master stops only its own slots until its replica takes over.
                *("--cluster-require-full-coverage", "no"),
                # A replica takes over however long its master was unheard.
                *("--cluster-replica-validity-factor", "0"),
                # What a node that fails a test said, kept beside its nodes.conf.
                *("--logfile", str(self.directory / f"redis-{port}.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port`: no goodbye to the others."""
        process = self.processes.pop(port)
        process.kill()
        process.wait()

    def stop(self) -> None:
        for port in list(self.processes):
            self.kill(port)


def _cluster_info(port: int) -> dict[str, str]:
    from redis import Redis

    with Redis(port=port, socket_timeout=2) as node:
        info: dict[str, str] = node.execute_command("CLUSTER INFO")
        return info if isinstance(info, dict) else {}


def slots_served(ports: list[int]) -> dict[int, list[tuple[int, int]]]:
    """Each live master's port and the slot ranges it serves, as the first node that answers
    sees them."""
    from redis import Redis

    for port in ports:
        with contextlib.suppress(Exception), Redis(port=port, socket_timeout=2) as node:
            nodes: dict[str, dict[str, Any]] = node.execute_command("CLUSTER NODES")
            return {
                int(address.split("@")[0].rsplit(":", 1)[1]): [
                    (int(first), int(last)) for first, last in described["slots"]
                ]
                for address, described in nodes.items()
                if "master" in described["flags"]
                and "fail" not in described["flags"]
                and described["slots"]
            }
    raise AssertionError("no node of the cluster answers")


def master_of(ports: list[int], key: str) -> int:
    """The port of the master serving `key`'s slot."""
    from redis.crc import key_slot

    slot = key_slot(key.encode())
    for port, ranges in slots_served(ports).items():
        if any(first <= slot <= last for first, last in ranges):
            return port
    raise AssertionError(f"no master serves slot {slot}")


def cluster_ready(ports: list[int]) -> bool:
    """Whether every node says the cluster is ok, with every slot served and every replica
    in sync with its master."""
    from redis import Redis

    try:
        for port in ports:
            info = _cluster_info(port)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return False
            with Redis(port=port, socket_timeout=2) as node:
                replication = node.info("replication")
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
    except Exception:
        return False
    return True


def wait_for_cluster(ports: list[int], within: float = CLUSTER_START_SECONDS) -> None:
    """Return once `cluster_ready`; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not cluster_ready(ports):
        if time.monotonic() > deadline:
            raise AssertionError(f"the Redis Cluster on {ports} is not ready after {within} s")
        time.sleep(0.1)


@contextlib.contextmanager
def redis_cluster(directory: Path, masters: int = 3) -> Iterator[LocalCluster]:
    """A Redis Cluster of `masters` masters and one replica each, on free ports, nothing kept
    on disk but its nodes.conf files in `directory`; every node killed on exit."""
    from sources.net import free_port

    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            unavailable(tool, "not on PATH; the Redis Cluster tests start their own cluster")
    # Distinct ports: a port handed out twice would make one node fail to start.
    wanted: set[int] = set()
    while len(wanted) < 4 * masters:
        wanted.add(free_port())
    chosen = sorted(wanted)
    ports = chosen[: 2 * masters]
    cluster = LocalCluster(directory, ports, dict(zip(ports, chosen[2 * masters :], strict=True)))
    try:
        for port in cluster.ports:
            cluster.start(port)
        for port in cluster.ports:
            deadline = time.monotonic() + CLUSTER_START_SECONDS
            while not _answers(port):
                assert time.monotonic() < deadline, f"redis-server on {port} did not start"
                time.sleep(0.05)
        subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in cluster.ports),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=CLUSTER_START_SECONDS,
        )
        wait_for_cluster(cluster.ports)
        yield cluster
    finally:
        cluster.stop()


def _answers(port: int) -> bool:
    from redis import Redis

    try:
        with Redis(port=port, socket_timeout=1) as node:
            return bool(node.ping())
    except Exception:
        return False


async def wait_for_redis(url: str, within: float = 10.0) -> None:
    """Return once the Redis at `url` answers PING (and has loaded its data)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if await client.ping():
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{url} did not answer within {within} s")
    finally:
        await client.aclose()


@dataclass
class SilentServer:
    """A TCP server that accepts connections and never answers: a store that hangs."""

    port: int
    connections: int = 0


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[SilentServer]:
    """A SilentServer on a free local port, counting the connections made to it."""
    silent = SilentServer(port=0)

    async def accept_and_say_nothing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        silent.connections += 1
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    silent.port = server.sockets[0].getsockname()[1]
    try:
        yield silent
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class StallingProxy:
    """A TCP proxy to a real server that stops answering a connection once it sent `marker`."""

    port: int
    marker: bytes
    # Connections that sent the marker: the server did their work, its replies are kept back.
    stalled: int = 0


@contextlib.asynccontextmanager
async def stalling_proxy(host: str, port: int, marker: bytes) -> AsyncIterator[StallingProxy]:
    """A StallingProxy to `host`:`port` on a free local port: a store that did the work asked
    but has not answered yet (a SilentServer does nothing at all)."""
    proxy = StallingProxy(port=0, marker=marker)
    pumps: set[asyncio.Task[None]] = set()

    async def relay(client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        server, to_server = await asyncio.open_connection(host, port)
        stalled = asyncio.Event()

        async def requests() -> None:
            sent = b""
            while chunk := await client.read(65536):
                sent = (sent + chunk)[-len(marker) - 65536 :]
                if marker in sent and not stalled.is_set():
                    stalled.set()
                    proxy.stalled += 1
                to_server.write(chunk)
                await to_server.drain()

        async def replies() -> None:
            while chunk := await server.read(65536):
                if stalled.is_set():
                    await asyncio.Event().wait()  # kept back until the proxy closes
                to_client.write(chunk)
                await to_client.drain()

        both = [asyncio.create_task(requests()), asyncio.create_task(replies())]
        pumps.update(both)
        try:
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in both:
                pump.cancel()
            await asyncio.gather(*both, return_exceptions=True)
            pumps.difference_update(both)
            to_server.close()
            to_client.close()

    listener = await asyncio.start_server(relay, "127.0.0.1", 0)
    proxy.port = listener.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        listener.close()
        for pump in list(pumps):
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await listener.wait_closed()
