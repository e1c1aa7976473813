"""The report puts c360 beside the peer: ratios, both floors, and any answer that differed."""

from __future__ import annotations

from pathlib import Path

from bench.report import PeerResult, Report, WorkloadResult, charts, markdown, ratio

PEER = "Apollo Server 5.5.1 (graphql-js 16.15.0) on Node v20.20.2, answers from memory"


def _result(
    workload: str, rps: float, floor: float | None, peer: PeerResult | None
) -> WorkloadResult:
    return WorkloadResult(
        workload=workload,
        connections=16,
        duration_s=10,
        requests=int(rps * 10),
        requests_per_second=rps,
        latency_p50_ms=5,
        latency_p95_ms=9,
        latency_p99_ms=12.5,
        latency_max_ms=20,
        errors=0,
        round_trips_per_request={},
        cache_hit_ratio=None,
        peak_rss_mb=100,
        floor_ops_per_second=floor,
        peer=peer,
    )


def _peer(
    rps: float, ours: float, floor: float, our_floor: float, differs: str | None
) -> PeerResult:
    return PeerResult(
        connections=16,
        requests_per_second=rps,
        latency_p50_ms=2,
        latency_p99_ms=4.25,
        errors=0,
        ratio=ratio(ours, rps),
        difference=differs,
        floor_ops_per_second=floor,
        floor_ratio=ratio(our_floor, floor),
    )


def _report(results: list[WorkloadResult], peer: str) -> Report:
    environment = {
        "customers": 2000,
        "sql": "SQLite",
        "mongo": "embedded SecantusDB",
        "vendors": "simulator process",
        "cache": "in-process",
        "workers": 1,
        "cpus": 2,
        "duration_s": 10,
        "python": "3.11",
        "commit": "abc1234",
        "peer": peer,
    }
    return Report("2026-12-05T04-00-00Z", environment, results, [])


def test_a_ratio_is_ours_over_theirs_and_missing_without_both() -> None:
    assert ratio(50, 200) == 0.25
    assert ratio(None, 200) is None
    assert ratio(50, None) is None and ratio(50, 0) is None


def test_the_table_puts_c360_beside_the_peer_and_names_a_differing_answer(tmp_path: Path) -> None:
    report = _report(
        [
            _result("typename", 3000, 15000, _peer(6000, 3000, 1_500_000, 15000, None)),
            _result(
                "agent360-warm", 100, 250, _peer(1600, 100, 5000, 250, "the peer's data differs")
            ),
            _result("ingest", 5, None, None),
        ],
        PEER,
    )
    text = markdown(report)
    assert f"## Beside the peer: {PEER}" in text
    assert (
        "| typename | 16 | 3,000.0 | 6,000.0 | 0.50 | 12.50 | 4.25 | 0 | 15,000.0 | 1,500,000.0 "
        "| 0.01 | yes |"
    ) in text
    assert (
        "| agent360-warm | 16 | 100.0 | 1,600.0 | 0.06 | 12.50 | 4.25 | 0 | 250.0 | 5,000.0 "
        "| 0.05 | NO |" in text
    )
    assert "Mismatch in agent360-warm: the peer's data differs" in text
    assert "| ingest | 16 |" not in text.split("## Beside the peer")[1]
    names = sorted(p.name.rsplit("-", 1)[-1] for p in charts(report, tmp_path, "run"))
    assert names == ["latency.png", "peer.png"]


def test_without_the_peer_the_report_says_why() -> None:
    reason = "not run: node is not on PATH (the peer runs on Node.js 20+)"
    text = markdown(_report([_result("typename", 3000, 15000, None)], reason))
    assert f"Peer: {reason}." in text and "Beside the peer" not in text
