"""The cache on a Redis Cluster: RedisBackend's contract, with every call kept to one slot.

- Entries: a batch is read with MGET per slot, pipelined, one round trip per node, all nodes
  at once (`mget_nonatomic`): a batch of entries of many customers is many slots, and hash
  tagging a whole batch into one slot would put every batch on one master. Entries need no
  atomic read together: each is judged on its own (its tombstone, its freshness).
- Write-backs and invalidations: the same scripts, once per slot, one round trip per node.
  An entry's key and its owner's tag share a slot (`EntityCache` names both with the owner's
  hash tag), so the check of the tag's tombstone stays in the script that writes the entry.
- Blobs (the response cache's answers): an answer is filed under the entries it read, of
  many owners, and the check that none was invalidated since the read must see the blob and
  every tag's tombstone at once, on one clock (`TIME`). So a blob and its tags live in one
  of BLOB_SHARDS slots, chosen by the blob's key, with its tags named again in that shard;
  an invalidation of a blob tag (a name ending in RESPONSE_TAG) reaches it in every shard.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from redis.asyncio.cluster import RedisCluster

from sources.cache.backends import Put, RedisBackend, put_call
from sources.cache.codec import RESPONSE_TAG
from sources.optional_redis import is_cluster
from sources.redis_slots import ScriptCall, group_by_slot, hash_tag, run_script

# Slots the response cache is spread over: enough to spread it over the masters of a cluster,
# few enough that an invalidation, which reaches each, costs one round trip per node still.
BLOB_SHARDS = 16
SHARDS = tuple(hash_tag(f"blobs:{n}") for n in range(BLOB_SHARDS))


class RedisClusterBackend(RedisBackend):
    """The Redis cache on a Redis Cluster (a `redis+cluster://` URL)."""

    hash_tags = True

    def __init__(self, url: str, *, timeout: float, breaker_seconds: float) -> None:
        super().__init__(url, timeout=timeout, breaker_seconds=breaker_seconds)
        if not isinstance(self._redis, RedisCluster):
            raise ValueError(f"not a Redis Cluster URL: {url}")
        self._cluster = self._redis
        self._mget = self._cluster.mget_nonatomic

    async def put_many(self, puts: list[Put]) -> None:
        calls = [put_call(group) for group in group_by_slot(self._cluster, puts, _key_of)]
        await self._call(lambda: run_script(self._cluster, self._put, calls))

    async def get_blob(self, key: str) -> tuple[bytes | None, float]:
        return await super().get_blob(_shard_of(key) + key)

    async def put_blob(
        self,
        key: str,
        blob: bytes,
        expire_in: float,
        tags: Sequence[str],
        read_at: float,
        within: float,
    ) -> bool:
        shard = _shard_of(key)
        filed = [shard + tag for tag in tags]
        return await super().put_blob(shard + key, blob, expire_in, filed, read_at, within)

    async def _tombstone(self, keys: list[str], tags: list[str], hold: float) -> None:
        placed = [
            named
            for tag in tags
            for named in ([s + tag for s in SHARDS] if tag.endswith(RESPONSE_TAG) else [tag])
        ]
        calls: list[ScriptCall] = []
        for group in group_by_slot(
            self._cluster, [(name, True) for name in placed] + [(k, False) for k in keys], _name
        ):
            slot_tags = [name for name, is_tag in group if is_tag]
            slot_keys = [name for name, is_tag in group if not is_tag]
            calls.append(([*slot_tags, *slot_keys], [int(hold * 1000), len(slot_tags)]))
        if calls:
            await run_script(self._cluster, self._invalidate, calls)


def redis_backend(url: str, *, timeout: float, breaker_seconds: float) -> RedisBackend:
    """The Redis cache at `url`: on a Redis Cluster when the URL names one."""
    backend = RedisClusterBackend if is_cluster(url) else RedisBackend
    return backend(url, timeout=timeout, breaker_seconds=breaker_seconds)


def _key_of(put: Put) -> str:
    return put.key


def _name(named: tuple[str, bool]) -> str:
    return named[0]


def _shard_of(key: str) -> str:
    """The hash tag of the shard a blob lives in, with its tags (first in each name: Redis
    hashes the first tag, and a blob tag carries its entry's owner tag after it)."""
    return SHARDS[zlib.crc32(key.encode()) % BLOB_SHARDS]
