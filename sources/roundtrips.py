"""Counts of round trips to each source, fed by hooks on the real drivers.

The counters are what the tests assert on (an N+1 shows up as a count that grows with the
data) and what the bench reports per request. They count at the driver, below every layer of
c360, so nothing in c360 can make a round trip that is not counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sources.catalog import NAMES


@dataclass
class RoundTrips:
    """Round trips made so far, per source."""

    counts: Counter[str] = field(default_factory=Counter)

    def record(self, source: str) -> None:
        """Count one round trip to `source`."""
        self.counts[source] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts now, for every source (zero where none was made)."""
        return {source: self.counts[source] for source in NAMES}

    def since(self, before: dict[str, int]) -> dict[str, int]:
        """The round trips made since `before` was taken with `snapshot()`."""
        return {source: self.counts[source] - before.get(source, 0) for source in NAMES}
