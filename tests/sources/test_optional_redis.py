"""Which Redis client a URL builds, and the names that keep a cluster's calls to one slot."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from api.settings import Settings
from sources.cache.cluster import SHARDS, RedisClusterBackend
from sources.cache.entity import CachePolicy, EntityCache
from sources.optional_redis import query_options, redis_connection
from sources.paging import PageKey
from sources.redis_slots import hash_tag

POLICY = CachePolicy(ttls={"sql": 60}, negative_ttl=5, stale_grace=60, hold=1)


def slot(key: str) -> int:
    return key_slot(key.encode())


async def test_a_cluster_url_names_its_startup_nodes_and_database_0_only() -> None:
    plain = redis_connection("redis://127.0.0.1:6379/0")
    cluster = redis_connection("redis+cluster://user:secret@10.0.0.1:7000,[::1]:7001/0")
    try:
        assert type(plain) is Redis
        assert isinstance(cluster, RedisCluster)
        assert {(n.host, n.port) for n in cluster.startup_nodes} == {
            ("10.0.0.1", 7000),
            ("::1", 7001),
        }
        assert cluster.connection_kwargs["password"] == "secret"
    finally:
        await plain.aclose()
        await cluster.aclose()
    with pytest.raises(RedisClusterException):
        redis_connection("redis+cluster://127.0.0.1:7000/1")


async def test_a_cluster_node_without_a_port_is_on_redis_default_port() -> None:
    cluster = redis_connection("redis+cluster://redis1,redis2,[::1]")
    try:
        assert isinstance(cluster, RedisCluster)
        assert {(n.host, n.port) for n in cluster.startup_nodes} == {
            ("redis1", 6379),
            ("redis2", 6379),
            ("::1", 6379),
        }
    finally:
        await cluster.aclose()


def test_the_cluster_setting_turns_a_redis_url_into_a_cluster_url() -> None:
    settings = Settings(_env_file=None, redis_url="rediss://h:7000/0", redis_cluster=True)  # type: ignore[call-arg]
    assert settings.redis_url == "rediss+cluster://h:7000/0"
    with pytest.raises(ValueError, match="over TCP"):
        Settings(_env_file=None, redis_url="unix:///tmp/r.sock", redis_cluster=True)  # type: ignore[call-arg]


async def test_what_one_script_call_touches_shares_a_slot() -> None:
    backend = RedisClusterBackend("redis+cluster://127.0.0.1:7000", timeout=1, breaker_seconds=1)
    cache = EntityCache(backend, POLICY, namespace="ns")
    try:
        page = cache.key("sql", "order_page", PageKey(owner=7, first=5))
        tag = cache.tag("sql", "order_page", 7)
        assert slot(page) == slot(tag) == slot(f"{tag}#gone") == slot(cache.key("sql", "c", 7))
        # A blob's tags are named again in its shard: the first hash tag of a name decides.
        answer_tag = f"{SHARDS[3]}{page}#r"
        assert slot(answer_tag) == slot(f"{SHARDS[3]}ns:response:abc")
    finally:
        await backend.close()


@pytest.mark.parametrize("owner", ["7", "}x{", "", "{}"])
def test_no_owner_can_end_or_empty_its_hash_tag(owner: str) -> None:
    tag = hash_tag(owner)
    assert tag.startswith("{") and tag.endswith("}") and "}" not in tag[1:-1] and len(tag) > 2
    assert slot(f"a:{tag}x") == slot(f"b:{tag}y")


def test_a_cluster_urls_query_configures_clients_built_from_elsewhere() -> None:
    # The rate limiter's cluster client is built by limits, which reads no query.
    url = "rediss+cluster://u:p@r1:7000,r2:7001/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
    assert query_options(url) == {"ssl_ca_certs": "/etc/ca.pem", "ssl_cert_reqs": "required"}
    assert query_options("redis+cluster://r1:7000,r2:7001") == {}
