"""The entity cache under the graph: warm views cost no source call, writes are seen at once
everywhere, a stale value bridges an outage, and a Redis outage never fails a request."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette

from api.connections import Connections
from api.settings import Settings
from sources.roundtrips import RoundTrips
from sources.sql import loaders as sql_loaders
from sources.sql import models
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer
from tests.conftest import Simulator, running_app
from tests.queries import agent_view
from tests.services import own_redis, wait_for_redis
from tests.trips import trips


def round_trips_of(app: Starlette) -> RoundTrips:
    round_trips: RoundTrips = app.state.connections.round_trips
    return round_trips


async def test_a_repeated_agent_view_costs_no_source_call(
    cached_settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store, orders=3)
    async with running_app(cached_settings) as (app, http):
        first = await agent_view(http, cid)
        before = round_trips_of(app).snapshot()
        second = await agent_view(http, cid)
        spent = round_trips_of(app).since(before)
        metrics = (await http.get("/metrics")).text
    assert "errors" not in first and second == first
    assert spent == trips()
    assert 'c360_cache_events_total{event="hit",source="sql"}' in metrics


async def test_a_write_is_read_back_from_another_instance_sharing_redis(
    shared_settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    shared = shared_settings
    cid = await build_customer(connections, vendor_store, orders=1)
    async with running_app(shared) as (app_a, http_a), running_app(shared) as (_, http_b):
        assert (await agent_view(http_a, cid))["data"]["customer"][
            "email"
        ] == f"test.{cid}@example.com"
        assert (await agent_view(http_b, cid))["data"]["customer"][
            "email"
        ] == f"test.{cid}@example.com"
        # The write path: change the row, then invalidate before acknowledging.
        async with app_a.state.connections.engine.begin() as sql:
            await sql.execute(
                models.Customer.__table__.update()
                .where(models.Customer.id == cid)
                .values(email=f"new.{cid}@example.com")
            )
        await app_a.state.connections.cache.invalidate("sql", sql_loaders.CUSTOMER, keys=[cid])
        assert (await agent_view(http_b, cid))["data"]["customer"][
            "email"
        ] == f"new.{cid}@example.com"
        assert (await agent_view(http_a, cid))["data"]["customer"][
            "email"
        ] == f"new.{cid}@example.com"


async def test_order_pages_of_a_customer_are_invalidated_together(
    cached_settings: Settings, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store, orders=2)
    query = """query($id: ID!) { customer(id: $id) { a: orders(first: 1) { totalCount }
        b: orders(first: 5, status: SHIPPED) { totalCount } } }"""
    async with running_app(cached_settings) as (app, http):
        payload = {"query": query, "variables": {"id": str(cid)}}
        assert (await http.post("/graphql", json=payload)).json()["data"]["customer"] == {
            "a": {"totalCount": 2},
            "b": {"totalCount": 2},
        }
        async with app.state.connections.engine.begin() as sql:
            await sql.execute(
                models.Order.__table__.update()
                .where(models.Order.customer_id == cid)
                .values(status="DELIVERED")
            )
        await app.state.connections.cache.invalidate("sql", sql_loaders.ORDER_PAGE, owners=[cid])
        assert (await http.post("/graphql", json=payload)).json()["data"]["customer"] == {
            "a": {"totalCount": 2},
            "b": {"totalCount": 0},
        }


async def test_stale_value_bridges_a_vendor_outage_and_says_so(
    settings: Settings,
    connections: Connections,
    vendor_store: VendorStore,
    vendor_faults: Simulator,
) -> None:
    cid = await build_customer(connections, vendor_store, orders=1)
    short = settings.with_sources(loyalty={"cache_ttl": 0.05}).model_copy(
        update={"cache_enabled": True}
    )
    async with running_app(short) as (_, http):
        fresh = await agent_view(http, cid)
        await asyncio.sleep(0.1)
        vendor_faults.set_faults("loyalty", failure_rate=1.0)
        stale = await agent_view(http, cid)
    assert stale["data"]["customer"]["loyalty"] == fresh["data"]["customer"]["loyalty"]
    assert "errors" not in stale
    [note] = stale["extensions"]["stale"]
    assert note["path"] == ["customer", "loyalty"]
    assert isinstance(note["ageSeconds"], int) and note["ageSeconds"] >= 0


async def test_queries_answer_through_a_redis_outage_and_caching_resumes(
    flaky_settings: Settings, connections: Connections, vendor_store: VendorStore, redis_port: int
) -> None:
    cid = await build_customer(connections, vendor_store, orders=2)
    flaky = flaky_settings
    url = flaky.redis_url or ""
    with own_redis(redis_port) as redis_process:
        await wait_for_redis(url)
        async with running_app(flaky) as (app, http):
            expected = await agent_view(http, cid)
            before = round_trips_of(app).snapshot()
            assert await agent_view(http, cid) == expected
            assert round_trips_of(app).since(before)["sql"] == 0

            redis_process.kill()
            redis_process.wait()
            for _ in range(3):
                assert await agent_view(http, cid) == expected  # answered from the sources
            assert app.state.connections.cache.counts[("sql", "error")] >= 1

            with own_redis(redis_port):
                await wait_for_redis(url)
                await asyncio.sleep(0.4)  # past the breaker
                assert await agent_view(http, cid) == expected  # refills the cache
                before = round_trips_of(app).snapshot()
                assert await agent_view(http, cid) == expected
                assert round_trips_of(app).since(before) == trips()
