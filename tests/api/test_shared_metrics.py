"""Metrics summed across the workers of one instance (`api.shared_metrics`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import Metrics
from api.shared_metrics import SharedMetrics, snapshot


def _worker_snapshot(requests: int, subscriptions: int, latencies: list[float]) -> bytes:
    registry = CollectorRegistry()
    counter = Counter("t_requests", "Requests.", ["path"], registry=registry)
    counter.labels("/graphql").inc(requests)
    Gauge("t_subscriptions", "Live.", registry=registry).set(subscriptions)
    histogram = Histogram("t_latency", "Seconds.", buckets=(0.1, 1.0), registry=registry)
    for latency in latencies:
        histogram.observe(latency)
    return snapshot(registry)


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def _samples(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        for sample in family.samples
    }


def test_counters_and_histograms_add_up_and_a_finished_workers_gauges_do_not(
    tmp_path: Path,
) -> None:
    # A worker that has finished: its counters still count, its gauges no longer do.
    finished = orjson.loads(_worker_snapshot(5, 40, [0.05, 2.0]))
    finished["pid"] = _dead_pid()
    (tmp_path / f"{finished['pid']}.metrics.json").write_bytes(orjson.dumps(finished))
    # This worker.
    registry = CollectorRegistry()
    Counter("t_requests", "Requests.", ["path"], registry=registry).labels("/graphql").inc(3)
    Gauge("t_subscriptions", "Live.", registry=registry).set(2)
    Histogram("t_latency", "Seconds.", buckets=(0.1, 1.0), registry=registry).observe(0.5)
    samples = _samples(SharedMetrics(tmp_path, registry).exposition())
    assert samples[("t_requests_total", (("path", "/graphql"),))] == 8
    assert samples[("t_subscriptions", ())] == 2
    assert samples[("t_latency_count", ())] == 3
    assert samples[("t_latency_sum", ())] == 2.55
    assert samples[("t_latency_bucket", (("le", "0.1"),))] == 1
    assert samples[("t_latency_bucket", (("le", "1.0"),))] == 2
    assert samples[("t_latency_bucket", (("le", "+Inf"),))] == 3
    assert not any(name.endswith("_created") for name, _ in samples)


def test_without_a_shared_directory_a_process_answers_its_own() -> None:
    metrics = Metrics()
    assert metrics.shared is None


def test_operation_names_are_bounded_labels() -> None:
    metrics = Metrics(max_operations=2)
    assert [metrics.operation_label(n) for n in ("A", "B", "C", "A", "D")] == [
        "A",
        "B",
        "other",
        "A",
        "other",
    ]


def test_a_snapshot_names_its_process() -> None:
    assert orjson.loads(snapshot(CollectorRegistry()))["pid"] == os.getpid()
