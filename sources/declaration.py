"""What c360 knows of a source outside the source's own code, declared once per source.

Settings (`C360_<NAME>_TIMEOUT`, `C360_CACHE_TTL_<NAME>`, and `C360_<NAME>_URL` for a vendor
API), the cache codec (which record types it may build), the round-trip counters, `/readyz`,
`/metrics`, the vendor clients and the bench's columns all read these declarations, listed in
`sources.catalog`. A source's own code (its client, records, loaders, resolvers and, for a
vendor, the simulator's routes) is the only other place it appears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Source:
    """One source of records: a store or a vendor API."""

    # Names its round-trip counter, its cache keys' source part, its /readyz entry, its
    # /metrics label, its bench column and its settings' variables: lower case, no spaces.
    name: str
    # What it is, for people: settings' descriptions and messages.
    title: str
    # The record types its loaders hand out: the only types the cache codec builds for it.
    records: tuple[type[Any], ...]
    # Defaults of its settings: freshness of its cached entries, and seconds per call.
    ttl: float
    timeout: float

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"a source's name is a lower-case identifier, not {self.name!r}")


@dataclass(frozen=True)
class VendorAPI(Source):
    """A third-party HTTP API, reached at `C360_<NAME>_URL` (the bundled simulator when unset)."""

    # A GET of this path answering below 500 means the vendor is reachable (/readyz).
    health_path: str = "/healthz"
