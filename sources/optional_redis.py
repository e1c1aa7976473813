"""Redis clients: one Redis, or a Redis Cluster when the URL says so.

A URL `redis+cluster://host:port[,host:port...]` (or `rediss+cluster://`, TLS) names a
cluster by its startup nodes: the client reads the slot map from whichever answers, follows
MOVED and ASK, and after a connection error reads it again, so it follows a failover once a
replica was promoted. `cluster_url` turns a plain `redis://` URL into one
(`C360_REDIS_CLUSTER=true`). A cluster has database 0 only: a URL naming another is refused.

`redis_client` is the client of a store c360 can do without (the cache, the shared limits,
persisted queries): each call is judged by a Breaker's Deadline, and a Redis that fails is
skipped.
"""

from __future__ import annotations

import contextlib
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from sources.deadline import SOCKET_BACKSTOP

RedisClient: TypeAlias = Redis | RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# What every cluster client of c360 is built with, whoever builds it (redis-py, limits).
CLUSTER_OPTIONS: dict[str, Any] = {
    # As many connections per node as one Redis's pool allows (redis-py's cluster default,
    # 100, refuses the 101st concurrent command with MaxConnectionsError instead of waiting).
    "max_connections": 2**31,
    # A dead master's slots are refused until its replica takes over; the others serve.
    "require_full_coverage": False,
}


def is_cluster(url: str) -> bool:
    """Whether `url` names a Redis Cluster."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def cluster_url(url: str) -> str:
    """`url` as a cluster URL: `redis://` becomes `redis+cluster://` (a cluster URL is kept)."""
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        return url
    if parts.scheme not in CLUSTER_SCHEMES.values():
        raise ValueError(f"a Redis Cluster is reached over TCP: redis:// or rediss://, not {url}")
    return urlunsplit(parts._replace(scheme=f"{parts.scheme}+cluster"))


def redis_connection(url: str, **options: Any) -> RedisClient:
    """A client of the Redis, or the Redis Cluster, at `url`; `options` go to redis-py."""
    if not is_cluster(url):
        return Redis.from_url(url, **options)
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes = [_host_and_port(host) for host in hosts.split(",")]
    # redis-py reads one node from the URL (and credentials, TLS, options); the others are
    # startup nodes too, so the client starts while any of them answers.
    first = urlunsplit(
        parts._replace(
            scheme=CLUSTER_SCHEMES[parts.scheme],
            netloc=f"{credentials}@{hosts.split(',')[0]}" if credentials else hosts.split(",")[0],
        )
    )
    return RedisCluster.from_url(
        first,
        startup_nodes=[ClusterNode(host, port) for host, port in nodes[1:]],
        **CLUSTER_OPTIONS,
        **options,
    )


# What redis-py reads off a URL to address a node, rather than to configure the connection.
_ADDRESSING = {"host", "port", "db", "path", "username", "password", "connection_class"}


def query_options(url: str) -> dict[str, Any]:
    """The connection options a Redis URL's query gives (`ssl_ca_certs`, `protocol`, ...), as
    redis-py reads them: for a client built from anything but the URL itself."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme, parts.scheme)
    first = parts.netloc.split(",")[0]
    parsed = parse_url(urlunsplit(parts._replace(scheme=scheme, netloc=first)))
    return {name: value for name, value in parsed.items() if name not in _ADDRESSING}


def _host_and_port(text: str) -> tuple[str, int]:
    """A node of a cluster URL (`host`, `host:port`, `[::1]:port`): its host and port."""
    node = urlsplit(f"//{text}")
    if not node.hostname:
        raise ValueError(f"a Redis Cluster node needs a host: {text!r}")
    return node.hostname, node.port or 6379


def redis_client(url: str, timeout: float) -> RedisClient:
    """A client of the Redis at `url` for calls given `timeout` per round trip by a Breaker."""
    return redis_connection(url, **breaker_options(timeout))


def breaker_options(timeout: float) -> dict[str, Any]:
    """redis-py's options for a client whose calls a Breaker gives `timeout` per round trip."""
    return {
        # A backstop only: the breaker's Deadline judges each call, and does not count the time
        # the event loop was busy elsewhere, as a socket timeout would.
        "socket_timeout": timeout * SOCKET_BACKSTOP,
        "socket_connect_timeout": timeout * SOCKET_BACKSTOP,
        # One immediate retry on a broken connection: after an outage the pool still holds dead
        # sockets, and the first use of each fails even though Redis is back (the Breaker drops
        # the idle ones when a call fails). A cluster retries once too, after reading the slot
        # map again: how it finds the replica promoted in a dead master's place.
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        "health_check_interval": 0,
    }


async def drop_idle_connections(client: RedisClient) -> None:
    """Close the connections no call is using (dead ones, after a failure); calls under way
    keep theirs."""
    with contextlib.suppress(Exception):
        if isinstance(client, RedisCluster):
            for node in client.get_nodes():
                await node.disconnect_free_connections()
        else:
            await client.connection_pool.disconnect(inuse_connections=False)
