"""The response cache: a query's answer kept as bytes, per caller's view, filed under the
entities it read, and made false by the same invalidations as the entity cache.

An answer is filed under a tag per entity it read (the entity cache's key of each loaded key,
and the owner tag of each page), so `EntityCache.invalidate` reaches every answer built on
what it invalidates, in this instance and, through Redis, in every other. A miss notes when
it looked (`Lookup.read_at`, on the store's clock): an answer is not put back when one of
its tags was invalidated after that, so a read racing a write never keeps the old answer.
An answer lives no longer than the shortest freshness of what it read, so vendor data, which
no event invalidates, is as fresh as in the entity cache. What is read through a loader the
entity cache does not cover (lookups by contact, search pages), a key that failed or was
served stale, makes the answer uncacheable.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from sources.cache.backends import CacheUnavailableError
from sources.cache.codec import RESPONSE_TAG, owner_of
from sources.cache.entity import EntityCache, Stale
from sources.dataloader import MISSING, DataLoader

HIT, MISS, STORED, ERROR = "hit", "miss", "stored", "error"


@dataclass(frozen=True, slots=True)
class Answer:
    """A cached answer: its JSON (data, and FORBIDDEN errors if any; no extensions), and the
    clear-text PII reads an execution of it records in the audit log."""

    body: bytes
    audit: tuple[tuple[int, str], ...]  # (customer id, "Type.field")

    def encode(self) -> bytes:
        # orjson writes no line break: the first one ends the audit list.
        return orjson.dumps(self.audit) + b"\n" + self.body

    @classmethod
    def decode(cls, blob: bytes) -> Answer | None:
        audit, separator, body = blob.partition(b"\n")
        try:
            reads = tuple((int(customer), str(field)) for customer, field in orjson.loads(audit))
        except (ValueError, TypeError):
            return None  # not an answer this version wrote: a miss, overwritten soon
        return cls(body, reads) if separator else None


@dataclass(frozen=True, slots=True)
class Lookup:
    """A look in the cache: the answer kept, if any, and when the store was read (None when it
    could not be: nothing is put back then)."""

    answer: Answer | None
    read_at: float | None


@dataclass(frozen=True, slots=True)
class Reads:
    """What one execution read through its loaders: the tags its answer is filed under and
    how long it stays fresh, or None when it must not be kept."""

    tags: tuple[str, ...]
    ttl: float


class ResponseCache:
    """Answers by key, over the entity cache's backend and names."""

    def __init__(self, entities: EntityCache) -> None:
        self.entities = entities
        self.backend = entities.backend
        self.prefix = f"{entities.prefix}response:"
        self.counts: Counter[str] = Counter()
        self.bytes_stored = 0

    def key(self, *parts: Any) -> str:
        """The key of an answer: a hash of what decides it (document, operation, variables,
        the caller's view), each part JSON-encoded with sorted keys."""
        digest = hashlib.sha256()
        for part in parts:
            digest.update(orjson.dumps(part, option=orjson.OPT_SORT_KEYS, default=str))
            digest.update(b"\x00")
        return self.prefix + digest.hexdigest()

    async def get(self, key: str) -> Lookup:
        try:
            blob, read_at = await self.backend.get_blob(key)
        except CacheUnavailableError:
            self.counts[ERROR] += 1
            return Lookup(None, None)
        answer = Answer.decode(blob) if blob is not None else None
        self.counts[HIT if answer is not None else MISS] += 1
        return Lookup(answer, read_at)

    async def put(self, key: str, answer: Answer, reads: Reads, read_at: float) -> bool:
        """Keep `answer` under its reads' tags; whether it was kept (not when a tag it read
        was invalidated since `read_at`, nor when the store is away)."""
        blob = answer.encode()
        try:
            kept = await self.backend.put_blob(
                key, blob, reads.ttl, reads.tags, read_at, self.entities.policy.hold
            )
        except CacheUnavailableError:
            self.counts[ERROR] += 1
            return False
        if kept:
            self.counts[STORED] += 1
            self.bytes_stored += len(blob)
        return kept

    def reads(self, loaders: Iterable[DataLoader[Any, Any]]) -> Reads | None:
        """The tags and freshness of an answer built from what `loaders` loaded; None when it
        must not be kept: nothing was loaded (nothing could make it false), or something was
        loaded that no invalidation reaches, failed, or was served stale."""
        entities = self.entities
        tags: set[str] = set()
        fresh_until = float("inf")
        for loader in loaders:
            if loader.failed:
                return None
            answers = loader.answers()
            first = next(answers, None)
            if first is None:
                continue
            if loader.origin is None or loader.fresh is None:
                return None
            source, name, tagged = loader.origin
            for key, value in itertools.chain((first,), answers):
                if value is MISSING or isinstance(value, Exception | Stale):
                    return None
                if key not in loader.fresh:
                    return None
                # As fresh as the least fresh value read: no fresher than the entity cache.
                fresh_until = min(fresh_until, loader.fresh[key])
                tags.add(entities.key(source, name, key) + RESPONSE_TAG)
                if tagged:
                    tags.add(entities.tag(source, name, owner_of(key)) + RESPONSE_TAG)
        ttl = fresh_until - entities.clock()
        if not tags or ttl <= 0:
            return None
        return Reads(tuple(sorted(tags)), ttl)
