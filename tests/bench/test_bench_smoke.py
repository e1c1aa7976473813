"""The bench runs every workload end to end at tiny scale and reports every field.

No timing is asserted: figures depend on the machine. What is asserted is that each workload
ran, made requests without errors, and that the report carries each figure.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.peer import PeerUnavailableError, peer_node
from bench.report import WorkloadResult
from bench.workloads import WORKLOADS
from tests import services

FIELDS = {f.name for f in dataclasses.fields(WorkloadResult)}


# Round trips per request a workload may make beyond its design, on a slow run: a "not found"
# is remembered for 15 s (`C360_CACHE_NEGATIVE_TTL`), so negative entries, and the kept answers
# they bound, can expire mid-run, and a vendor call that timed out is not kept; either is
# fetched again (seen in CI: 6 round trips in 5,479 agent360-cached requests, 0.0011 a
# request). A cache that did not answer would make several a request.
EXPIRED_REFETCHES = 0.01


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path]:
    if shutil.which("wrk") is None:
        services.unavailable("wrk", "the bench needs wrk on PATH (apt-get install wrk)")
    out = tmp_path_factory.mktemp("bench")
    # A warm-up long enough for the hot set to be cached before the measured second.
    args = (
        "--customers 120 --duration 2 --warmup 2 --sweep 1,2 --floor-seconds 0.3 "
        "--subscribers 40 --event-rate 10"
    )
    code = main([*args.split(), "--data-dir", str(out / "data"), "--output", str(out / "results")])
    assert code == 0
    [json_path] = (out / "results").glob("*.json")
    return json.loads(json_path.read_text()), out / "results"


def test_every_workload_ran_without_errors(report: tuple[dict[str, object], Path]) -> None:
    data, _ = report
    results = data["results"]
    assert isinstance(results, list)
    assert [r["workload"] for r in results] == [
        "typename",
        "agent360-cold",
        "agent360-warm",
        "agent360-cached",
        "agent360-churn",
        "orders-page",
        "customer-search",
        "batch-100",
        "entities-100",
        "ingest",
        "subscriptions",
    ]
    for result in results:
        assert set(result) == FIELDS
        assert result["requests"] > 0 and result["errors"] == 0
        assert result["peak_rss_mb"] > 0
        if result["workload"] == "subscriptions":
            assert result["subscribers"] == 40 and result["events_lost"] == 0
            # Only this run's own changes are timed: the ingest workload's events, dated by
            # their upstream time weeks ago and still being relayed, once made this p99 days.
            assert result["latency_p99_ms"] < 60_000
            continue
        if result["workload"] == "ingest":
            assert result["events_per_second"] == result["requests_per_second"] * 100
        elif WORKLOADS[result["workload"]].answered:
            assert result["floor_ops_per_second"] is None  # agent360-warm's document and floor
        else:
            assert result["floor_ops_per_second"] > 0 and result["floor_ratio"] > 0
        assert set(result["round_trips_per_request"]) == {"sql", "mongo", "loyalty", "tracking"}


def test_round_trips_match_the_batching_design(report: tuple[dict[str, object], Path]) -> None:
    data, _ = report
    for result in data["results"]:  # type: ignore[attr-defined]
        promised = WORKLOADS[result["workload"]].round_trips
        if promised is None:
            continue
        measured = result["round_trips_per_request"]
        # Fewer with the cache, or for a customer with no orders; never more than promised,
        # but for the refetches of entries that expired during the run.
        for source, count in promised.items():
            assert measured[source] <= count + EXPIRED_REFETCHES, (
                result["workload"],
                source,
                measured,
            )


def test_the_cache_serves_the_hot_set(report: tuple[dict[str, object], Path]) -> None:
    data, _ = report
    results = {r["workload"]: r for r in data["results"]}  # type: ignore[attr-defined]
    assert results["typename"]["cache_hit_ratio"] is None  # nothing looked up
    warm = results["agent360-warm"]
    assert warm["cache_hit_ratio"] > 0.9  # the entity cache: each answer was executed
    assert sum(warm["round_trips_per_request"].values()) < 1
    answered = results["agent360-cached"]
    assert answered["cache_hit_ratio"] > 0.9  # the response cache
    assert sum(answered["round_trips_per_request"].values()) < EXPIRED_REFETCHES


def test_every_answer_after_a_change_reflects_it(report: tuple[dict[str, object], Path]) -> None:
    data, directory = report
    [churn] = [r for r in data["results"] if r["workload"] == "agent360-churn"]  # type: ignore[attr-defined]
    # 10% of the 100 hot customers a second (on time whatever the latency) for the 2 s run,
    # each change checked twice.
    assert 15 <= churn["changes"] <= 21 and churn["change_checks"] == 2 * churn["changes"]
    assert churn["stale_answers"] == 0
    assert 0.5 < churn["cache_hit_ratio"] < 1  # kept answers, and the misses the changes made
    assert "Churn:" in next(directory.glob("*.md")).read_text()


def test_report_has_table_charts_and_sweep(report: tuple[dict[str, object], Path]) -> None:
    data, directory = report
    assert [r["connections"] for r in data["sweep"]] == [1, 2]  # type: ignore[index]
    [markdown] = directory.glob("*.md")
    text = markdown.read_text()
    for name in (
        "typename",
        "agent360-warm",
        "agent360-cold",
        "orders-page",
        "customer-search",
        "batch-100",
        "entities-100",
        "Ingestion:",
        "Subscriptions:",
        "Targets",
    ):
        assert name in text
    charts = sorted(p.name.rsplit("-", 1)[-1] for p in directory.glob("*.png"))
    peer = ["peer.png"] if data["results"][0]["peer"] else []  # type: ignore[index]
    assert charts == sorted(["latency.png", "throughput.png", *peer])
    for chart in directory.glob("*.png"):
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_peer_ran_beside_every_graphql_workload(report: tuple[dict[str, object], Path]) -> None:
    try:
        peer_node()
    except PeerUnavailableError as error:
        services.unavailable("node", str(error))
    data, directory = report
    assert str(data["environment"]["peer"]).startswith("Apollo Server 5")  # type: ignore[index]
    for result in data["results"]:  # type: ignore[attr-defined]
        peer = result["peer"]
        workload = WORKLOADS[result["workload"]]
        if workload.batch or workload.live or workload.churn:
            assert peer is None
            continue
        # The same wrk script: every request it sent was one c360 had answered, and the peer's
        # answer was c360's.
        assert peer["requests_per_second"] > 0 and peer["errors"] == 0, result["workload"]
        assert peer["difference"] is None and peer["connections"] == result["connections"]
        assert peer["ratio"] == result["requests_per_second"] / peer["requests_per_second"]
        assert peer["floor_ops_per_second"] > 0
        if result["floor_ops_per_second"] is None:  # agent360-cached: no engine floor
            assert peer["floor_ratio"] is None
            continue
        assert peer["floor_ratio"] == result["floor_ops_per_second"] / peer["floor_ops_per_second"]
    [markdown] = directory.glob("*.md")
    assert "## Beside the peer: Apollo Server 5" in markdown.read_text()
