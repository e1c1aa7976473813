"""Metrics that add up across the worker processes of one `c360 serve --workers N`.

Each process's metrics live in its own registry (`api.metrics`); a scrape reaches one worker
at random. With a shared directory (`C360_METRICS_DIR`, which `c360 serve` makes for itself
when it runs more than one worker), every worker writes a snapshot of its registry there (at
most `every` seconds old, and fresh at each scrape it answers), and a scrape answers the sum
over every worker's snapshot:

- counters and histograms are summed over every snapshot, a finished worker's included, so a
  total never goes down when a worker is replaced (as Prometheus' own multiprocess mode does);
- gauges are summed over the workers still running (a finished worker serves nothing);
- `_created` samples are left out: a sum of creation times means nothing.

This, rather than prometheus_client's multiprocess mode, because most of c360's metrics are
collectors reading counts at scrape time (round trips, cache events, subscriptions), which
that mode does not support.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

SNAPSHOT_SECONDS = 1.0
_SUFFIX = ".metrics.json"


def snapshot(registry: CollectorRegistry) -> bytes:
    """A registry's families and samples now, as JSON."""
    families = [
        {
            "name": family.name,
            "documentation": family.documentation,
            "type": family.type,
            "samples": [
                [sample.name, sample.labels, sample.value]
                for sample in family.samples
                if not sample.name.endswith("_created")
            ],
        }
        for family in registry.collect()
    ]
    return orjson.dumps({"pid": os.getpid(), "families": families})


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def merge(snapshots: Iterable[dict[str, Any]]) -> list[Metric]:
    """The families of many snapshots, summed as the module says."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for taken in snapshots:
        running = _running(int(taken["pid"]))
        for family in taken["families"]:
            if family["type"] == "gauge" and not running:
                continue
            name = family["name"]
            if name not in merged:
                merged[name] = Metric(name, family["documentation"], family["type"])
                values[name] = {}
            for sample_name, labels, value in family["samples"]:
                key = (sample_name, tuple(sorted(labels.items())))
                values[name][key] = values[name].get(key, 0.0) + value
    for name, metric in merged.items():
        for (sample_name, labels), value in values[name].items():
            metric.add_sample(sample_name, dict(labels), value)
    return list(merged.values())


class _Merged(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class SharedMetrics:
    """This worker's snapshots in `directory`, and the sum of every worker's."""

    def __init__(
        self, directory: Path, registry: CollectorRegistry, every: float = SNAPSHOT_SECONDS
    ) -> None:
        self._directory = directory
        self._registry = registry
        self._every = every
        self._task: asyncio.Task[None] | None = None
        self._path = self._own_path()

    def _own_path(self) -> Path:
        # The pid names the worker (a finished one's gauges are left out); the random part
        # keeps a later process given the same pid from overwriting its counts.
        return self._directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}{_SUFFIX}"

    def write(self) -> None:
        """Replace this worker's snapshot with one taken now (atomically: readers never see
        half of one)."""
        partial = self._path.with_suffix(".partial")
        partial.write_bytes(snapshot(self._registry))
        partial.replace(self._path)

    def exposition(self) -> bytes:
        """Every worker's metrics summed, in Prometheus' text format."""
        self.write()
        snapshots = []
        for path in self._directory.glob(f"*{_SUFFIX}"):
            try:
                snapshots.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                log.warning("metrics snapshot %s could not be read; left out", path.name)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged(merge(snapshots)))
        return generate_latest(registry)

    def start(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        # Named now, in the worker: a process manager that forks workers from one parent that
        # made the app must not leave them all writing one file.
        self._path = self._own_path()
        self.write()
        self._task = asyncio.create_task(self._keep_writing())

    async def _keep_writing(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                self.write()
            except Exception:
                log.warning("could not write this worker's metrics snapshot", exc_info=True)

    async def stop(self) -> None:
        """Stop, leaving a last snapshot: its counters still count in the totals."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.write()


def clear(directory: Path) -> None:
    """Remove the snapshots of an earlier run, so its totals do not add to this one's."""
    for path in directory.glob(f"*{_SUFFIX}"):
        path.unlink(missing_ok=True)
