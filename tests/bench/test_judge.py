"""Targets are judged only where they apply: store, scale and concurrency."""

from __future__ import annotations

import dataclasses

from bench.report import PeerResult, WorkloadResult, judge


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


def test_a_target_relative_to_the_peer_is_judged_on_the_peer_figures() -> None:
    typename = dataclasses.replace(_search(16, 5), workload="typename")
    [unmeasured] = judge(typename, postgres=False, customers=10_000)
    assert unmeasured["status"] == "not measured (no peer in this run)"
    for ratio, status in ((1.3, "met"), (0.74, "missed")):
        typename.peer = PeerResult(
            connections=16,
            requests_per_second=6_000,
            latency_p50_ms=2,
            latency_p99_ms=5,
            errors=0,
            ratio=ratio,
            difference=None,
        )
        [verdict] = judge(typename, postgres=False, customers=10_000)
        assert verdict["metric"] == "peer.ratio" and verdict["limit"] == 1.2
        assert verdict["value"] == ratio and verdict["status"] == status
    assert verdict["short_by"] == "0.46 (62% of target)"
