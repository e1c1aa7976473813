"""Targets are judged only where they apply: store, scale and concurrency."""

from __future__ import annotations

from bench.report import WorkloadResult, judge


def _search(connections: int, p99: float) -> WorkloadResult:
    return WorkloadResult(
        workload="customer-search",
        connections=connections,
        duration_s=10,
        requests=100,
        requests_per_second=10,
        latency_p50_ms=p99 / 2,
        latency_p95_ms=p99,
        latency_p99_ms=p99,
        latency_max_ms=p99,
        errors=0,
        round_trips_per_request={"sql": 1},
        cache_hit_ratio=None,
        peak_rss_mb=100,
    )


def test_a_target_is_met_or_missed_by_how_much_where_it_applies() -> None:
    [met] = judge(_search(16, 80), postgres=True, customers=100_000)
    assert met["status"] == "met"
    [missed] = judge(_search(16, 250), postgres=True, customers=100_000)
    assert missed["status"] == "missed" and missed["short_by"] == "150 over the limit (2.5x)"


def test_a_target_of_another_store_scale_or_concurrency_is_not_applicable() -> None:
    for result, postgres, customers, why in (
        (_search(16, 80), False, 100_000, "SQL store is not PostgreSQL"),
        (_search(16, 80), True, 10_000, "fewer than 100,000 customers"),
        (_search(1, 80), True, 100_000, "run at 1 connection, the target is at 16"),
    ):
        [verdict] = judge(result, postgres=postgres, customers=customers)
        assert verdict["status"] == f"not applicable ({why})"
        assert "short_by" not in verdict
