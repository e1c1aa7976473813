"""Expected round trips, written as the sources a test cares about."""

from __future__ import annotations

from sources.catalog import NAMES


def trips(**counts: int) -> dict[str, int]:
    """Round trips per declared source as `RoundTrips.since` reports them: the counts named,
    0 for every other source (so a source declared later needs no edit here)."""
    unknown = set(counts) - set(NAMES)
    if unknown:
        raise ValueError(f"no source is named {', '.join(sorted(unknown))}")
    return {name: counts.get(name, 0) for name in NAMES}
