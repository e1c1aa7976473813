"""A Redis Cluster master killed under load: no request fails, and c360 follows the failover.

The app runs on the session's cluster (three masters, a replica each) with the cache, the
response cache, the rate limits, persisted queries and the event bus all there. The master
killed is the one holding the event stream, so the relay loses the bus too. While its slots
have no master, calls to them fail and the breakers send requests to the sources; once its
replica is promoted, the clients read the slot map again and use the cluster as before.

What is not asserted: freshness across the failover. Redis replicates asynchronously, so a
master that dies may take with it writes its replica had not received, an invalidation's
tombstone among them (README, "Redis Cluster").
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from api.app import create_app
from api.connections import Connections
from api.settings import Settings
from sources.cache.cluster import RedisClusterBackend
from sources.cache.entity import HIT
from sources.thirdparty.simulator import VendorStore
from tests.auth import AGENT
from tests.builders import build_customer
from tests.conftest import serving
from tests.http.test_redis_outage import (
    CUSTOMER,
    READERS,
    Load,
    all_published,
    internal_errors,
    outbox_events,
    post,
    read,
    write,
)
from tests.services import LocalCluster, master_of, slots_served, wait_for_cluster
from tests.waits import until


@pytest.mark.usefixtures("only_these_processes_relay")
async def test_a_master_killed_under_load_fails_no_request_and_the_cluster_is_used_again(
    settings: Settings,
    connections: Connections,
    vendor_store: VendorStore,
    redis_cluster: LocalCluster,
    redis_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    customers = [await build_customer(connections, vendor_store) for _ in range(4)]
    on_cluster = settings.model_copy(
        update={
            "cache_enabled": True,
            "redis_url": redis_cluster.url,
            "cache_namespace": redis_namespace,
            "redis_breaker_seconds": 0.3,
            "relay_poll_seconds": 0.1,
            "rate_limit_principal": "100000/minute",
            "rate_limit_ip": "100000/minute",
        }
    )
    victim = await asyncio.to_thread(master_of, redis_cluster.ports, f"{redis_namespace}:events")
    live = [port for port in redis_cluster.ports if port != victim]
    load = Load()
    application = create_app(on_cluster)
    clients: list[asyncio.Task[None]] = []
    try:
        async with (
            application.router.lifespan_context(application),
            serving(application) as base_url,
            httpx.AsyncClient(base_url=base_url, headers=AGENT, timeout=30) as http,
        ):
            cache = application.state.connections.cache
            assert isinstance(cache.backend, RedisClusterBackend)
            for cid in customers:
                await post(http, load, "query", {"query": CUSTOMER, "variables": {"id": str(cid)}})
            clients = [
                *(asyncio.create_task(read(http, load, customers)) for _ in range(READERS)),
                *(asyncio.create_task(write(http, load, cid)) for cid in customers),
            ]
            await until(lambda: load.successes >= 8, "changes before the kill", 20)
            redis_cluster.kill(victim)
            during = load.successes
            await until(lambda: load.successes >= during + 8, "changes while it fails over", 30)
            # Its replica takes over once the others have failed it (the node timeout, then an
            # election): every slot served again, by three masters, the victim not among them.
            await asyncio.to_thread(wait_for_cluster, live)
            served = await asyncio.to_thread(slots_served, live)
            assert victim not in served and len(served) == 3
            # The cluster is used again: cache hits, and answers after the failover.
            hits = sum(n for (_, event), n in cache.counts.items() if event == HIT)
            after = len(load.responses)
            await until(
                lambda: sum(n for (_, e), n in cache.counts.items() if e == HIT) > hits + 20,
                "cache hits after the failover",
                30,
            )
            await until(lambda: len(load.responses) >= after + 100, "load after the failover", 30)
            load.stop.set()
            await asyncio.gather(*clients)
            # What the relay kept while the stream's master was gone reaches its successor.
            await until(
                lambda: all_published(connections, customers),
                "the relay to publish what it kept",
                30,
            )
    finally:
        load.stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
        if victim not in redis_cluster.processes:
            # Back as a replica of its successor, for the tests that use the cluster after this.
            redis_cluster.start(victim)
            await asyncio.to_thread(wait_for_cluster, redis_cluster.ports)

    assert internal_errors(load) == []
    assert all(status == 200 and "errors" not in body for _, status, body in load.responses), [
        body for _, _, body in load.responses if "errors" in body
    ][:3]
    mutations = [body for kind, _, body in load.responses if kind == "mutation"]
    committed = await outbox_events(connections, customers, unpublished=False)
    assert committed == load.successes == len(mutations), "each committed change said so"
    ours = [r for r in caplog.records if r.name.split(".")[0] in {"api", "resolvers", "sources"}]
    assert not any(r.exc_info for r in ours), "no tracebacks for a failover"
