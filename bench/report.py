"""The bench report: JSON for machines, a markdown table for people, PNG charts for a glance."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.workloads import WORKLOADS, Target
from sources.catalog import NAMES

NA = "n/a"


@dataclass
class PeerResult:
    """The peer's figures for one workload: Apollo Server 5 over c360's recorded answers."""

    connections: int
    requests_per_second: float
    latency_p50_ms: float
    latency_p99_ms: float
    errors: int
    # c360's req/s over the peer's (above 1: c360 is faster).
    ratio: float | None
    # None when the peer answered c360's data, else what differed.
    difference: str | None
    floor_ops_per_second: float | None = None
    # c360's engine floor over graphql-js's floor of the same documents and data.
    floor_ratio: float | None = None


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either is missing or theirs is 0."""
    return ours / theirs if ours is not None and theirs else None


@dataclass
class WorkloadResult:
    """Every figure the bench reports for one workload at one concurrency."""

    workload: str
    connections: int
    duration_s: float
    requests: int
    requests_per_second: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    errors: int
    round_trips_per_request: dict[str, float]
    cache_hit_ratio: float | None
    peak_rss_mb: float
    floor_ops_per_second: float | None = None
    floor_ratio: float | None = None
    events_per_second: float | None = None
    subscribers: int | None = None
    events_lost: int | None = None
    # agent360-churn: changes made during the run, and answers read after one that did not
    # reflect it (None when the workload makes no changes, or none went through).
    changes: int | None = None
    change_checks: int | None = None
    stale_answers: int | None = None
    ids_wrapped: bool = False
    peer: PeerResult | None = None
    targets: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    started_at: str
    environment: dict[str, Any]
    results: list[WorkloadResult]
    sweep: list[WorkloadResult]

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)


def judge(result: WorkloadResult, postgres: bool, customers: int) -> list[dict[str, Any]]:
    """Each target of the workload: met, missed (and by how much), or not applicable here."""
    workload = WORKLOADS[result.workload]
    verdicts = []
    for target in workload.targets:
        verdict = _verdict(target, _figure(result, target.metric), postgres, customers)
        if not workload.live and result.connections != workload.connections:
            # Each target speaks of the workload's own concurrency (`--connections` overrides).
            verdict.pop("short_by", None)
            run = f"{result.connections} connection{'' if result.connections == 1 else 's'}"
            verdict["status"] = (
                f"not applicable (run at {run}, the target is at {workload.connections})"
            )
        verdicts.append(verdict)
    return verdicts


def _figure(result: WorkloadResult, metric: str) -> float | None:
    """A figure of the result, or of its peer (`peer.ratio`): None when not measured."""
    owner: Any = result
    if metric.startswith("peer."):
        owner, metric = result.peer, metric.removeprefix("peer.")
    value: float | None = getattr(owner, metric, None)
    return value


def _verdict(target: Target, value: float | None, postgres: bool, customers: int) -> dict[str, Any]:
    verdict: dict[str, Any] = {
        "target": target.description,
        "metric": target.metric,
        "limit": target.limit,
        "value": value,
    }
    if target.needs_postgres and not postgres:
        verdict["status"] = "not applicable (SQL store is not PostgreSQL)"
        return verdict
    if customers < target.min_customers:
        verdict["status"] = f"not applicable (fewer than {target.min_customers:,} customers)"
        return verdict
    if value is None:
        peer = target.metric.startswith("peer.")
        verdict["status"] = "not measured (no peer in this run)" if peer else "not measured"
        return verdict
    met = value >= target.limit if target.higher_is_better else value <= target.limit
    verdict["status"] = "met" if met else "missed"
    if not met:
        if target.higher_is_better:
            verdict["short_by"] = (
                f"{target.limit - value:.3g} ({value / target.limit:.0%} of target)"
            )
        else:
            verdict["short_by"] = (
                f"{value - target.limit:.3g} over the limit ({value / target.limit:.1f}x)"
            )
    return verdict


def _fmt(value: float | None, digits: int = 1) -> str:
    return NA if value is None else f"{value:,.{digits}f}"


def markdown(report: Report) -> str:
    """The report as markdown: one row per workload, then the sweep and the targets."""
    env = report.environment
    lines = [
        f"# c360 bench, {report.started_at}",
        "",
        f"{env['customers']:,} customers; SQL: {env['sql']}; MongoDB: {env['mongo']}; vendors: "
        f"{env['vendors']}; cache: {env['cache']}; {env['workers']} worker(s); {env['cpus']} CPUs; "
        f"{env['duration_s']:.0f} s per workload; tracing {env.get('tracing', 'off')}; "
        f"commit {env['commit']}.",
        "",
        "| workload | conns | req/s | p50 ms | p95 ms | p99 ms | max ms | errors | "
        f"round trips/req ({', '.join(NAMES)}) | cache hits | peak RSS MB | "
        "floor ops/s | service/floor |",
        "| --- " + "| ---: " * 7 + "| --- " + "| ---: " * 4 + "|",
    ]
    for r in report.results:
        trips = ", ".join(_fmt(r.round_trips_per_request.get(s), 2) for s in NAMES)
        hits = NA if r.cache_hit_ratio is None else f"{r.cache_hit_ratio:.0%}"
        lines.append(
            f"| {r.workload} | {r.connections} | {_fmt(r.requests_per_second)} | "
            f"{_fmt(r.latency_p50_ms, 2)} | {_fmt(r.latency_p95_ms, 2)} | "
            f"{_fmt(r.latency_p99_ms, 2)} | {_fmt(r.latency_max_ms, 2)} | {r.errors} | {trips} | "
            f"{hits} | {_fmt(r.peak_rss_mb)} | {_fmt(r.floor_ops_per_second)} | "
            f"{_fmt(r.floor_ratio, 2)} |"
        )
    for r in report.results:
        if r.subscribers is not None:
            lines += [
                "",
                f"Subscriptions: {r.subscribers:,} subscribers, {r.requests:,} deliveries, "
                f"{r.events_lost} lost; latency is from commit to the client.",
            ]
        if r.changes is not None:
            lines += [
                "",
                f"Churn: {r.changes:,} changes during the run ({r.changes / r.duration_s:,.1f}/s), "
                f"{r.stale_answers if r.stale_answers is not None else NA} stale answers in "
                f"{r.change_checks or 0:,} checks against a fresh execution.",
            ]
        if r.events_per_second is not None:
            lines += [
                "",
                f"Ingestion: {r.events_per_second:,.0f} events/s "
                f"({r.requests_per_second:,.1f} batches of 100/s, {r.connections} connections).",
            ]
    lines += _peer_lines(report)
    if report.sweep:
        lines += [
            "",
            "## agent360-warm: throughput against concurrency",
            "",
            "| conns | req/s | p50 ms | p99 ms |",
            "| ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r.connections} | {_fmt(r.requests_per_second)} | "
            f"{_fmt(r.latency_p50_ms, 2)} | {_fmt(r.latency_p99_ms, 2)} |"
            for r in report.sweep
        ]
    lines += [
        "",
        "## Targets",
        "",
        "| workload | target | value | status |",
        "| --- | --- | ---: | --- |",
    ]
    for r in report.results:
        for t in r.targets:
            status = t["status"] + (f", short by {t['short_by']}" if "short_by" in t else "")
            value = t["value"]
            shown = NA if value is None else f"{value:,.2f}"
            lines.append(f"| {r.workload} | {t['target']} | {shown} | {status} |")
    wrapped = [r.workload for r in report.results if r.ids_wrapped]
    if wrapped:
        lines += [
            "",
            f"Note: {', '.join(wrapped)} sent more requests than there are customers, "
            "so some customers were requested twice.",
        ]
    return "\n".join(lines) + "\n"


def _peer_lines(report: Report) -> list[str]:
    """c360 beside the peer, workload by workload, and any answer of the peer's that differed."""
    peer = report.environment.get("peer")
    compared = [r for r in report.results if r.peer is not None]
    if not compared:
        return ["", f"Peer: {peer}."] if peer else []
    lines = [
        "",
        f"## Beside the peer: {peer}",
        "",
        "| workload | conns | c360 req/s | peer req/s | c360/peer | c360 p99 ms | peer p99 ms | "
        "peer errors | c360 floor ops/s | graphql-js floor ops/s | c360/graphql-js floor | "
        "same answer |",
        "| --- " + "| ---: " * 10 + "| --- |",
    ]
    for r in compared:
        p = r.peer
        assert p is not None
        lines.append(
            f"| {r.workload} | {p.connections} | {_fmt(r.requests_per_second)} | "
            f"{_fmt(p.requests_per_second)} | {_fmt(p.ratio, 2)} | {_fmt(r.latency_p99_ms, 2)} | "
            f"{_fmt(p.latency_p99_ms, 2)} | {p.errors} | {_fmt(r.floor_ops_per_second)} | "
            f"{_fmt(p.floor_ops_per_second)} | {_fmt(p.floor_ratio, 2)} | "
            f"{'yes' if p.difference is None else 'NO'} |"
        )
    for r in compared:
        if r.peer is not None and r.peer.difference is not None:
            lines += ["", f"Mismatch in {r.workload}: {r.peer.difference}"]
    return lines


def charts(report: Report, directory: Path, stem: str) -> list[Path]:
    """Latency percentiles per workload, c360 beside the peer (requests/s and engine floors),
    and agent360-warm throughput against concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    figure, axis = plt.subplots(figsize=(9, 4.5))
    names = [r.workload for r in report.results]
    width = 0.25
    for offset, (label, attr) in enumerate(
        (("p50", "latency_p50_ms"), ("p95", "latency_p95_ms"), ("p99", "latency_p99_ms"))
    ):
        axis.bar(
            [i + (offset - 1) * width for i in range(len(names))],
            [getattr(r, attr) for r in report.results],
            width,
            label=label,
        )
    axis.set_xticks(
        range(len(names)), [f"{r.workload}\n({r.connections} conns)" for r in report.results]
    )
    axis.set_ylabel("latency (ms)")
    axis.set_title("c360 latency percentiles per workload")
    axis.legend()
    figure.tight_layout()
    path = directory / f"{stem}-latency.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    paths.append(path)

    compared = [r for r in report.results if r.peer is not None]
    if compared:
        figure, (throughput, floor) = plt.subplots(1, 2, figsize=(12, 4.5))
        positions = range(len(compared))
        labels = [f"{r.workload}\n({r.connections} conns)" for r in compared]
        for axis, title, pairs in (
            (
                throughput,
                "requests/s over HTTP",
                [(r.requests_per_second, r.peer.requests_per_second) for r in compared if r.peer],
            ),
            (
                floor,
                "engine floor, ops/s in-process",
                [(r.floor_ops_per_second, r.peer.floor_ops_per_second) for r in compared if r.peer],
            ),
        ):
            for offset, (label, values) in enumerate(
                (
                    ("c360", [a for a, _ in pairs]),
                    ("Apollo Server 5 / graphql-js", [b for _, b in pairs]),
                )
            ):
                axis.bar(
                    [i + (offset - 0.5) * width for i in positions],
                    [v or 0 for v in values],
                    width,
                    label=label,
                )
            axis.set_xticks(positions, labels, fontsize=7)
            axis.set_yscale("log")
            axis.set_title(title)
            axis.legend()
        figure.suptitle("c360 beside the peer (same documents, same answers)")
        figure.tight_layout()
        path = directory / f"{stem}-peer.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)

    if report.sweep:
        figure, axis = plt.subplots(figsize=(7, 4.5))
        conns = [r.connections for r in report.sweep]
        axis.plot(
            conns, [r.requests_per_second for r in report.sweep], marker="o", label="requests/s"
        )
        axis.set_xscale("log", base=2)
        axis.set_xticks(conns, [str(c) for c in conns])
        axis.set_xlabel("connections")
        axis.set_ylabel("requests/s")
        latency = axis.twinx()
        latency.plot(
            conns,
            [r.latency_p99_ms for r in report.sweep],
            marker="s",
            color="tab:red",
            label="p99 ms",
        )
        latency.set_ylabel("p99 latency (ms)")
        axis.set_title("agent360-warm: throughput and p99 against concurrency")
        handles = [*axis.get_lines(), *latency.get_lines()]
        axis.legend(handles=handles, loc="center left")
        figure.tight_layout()
        path = directory / f"{stem}-throughput.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def write(report: Report, directory: Path) -> tuple[Path, Path, list[Path]]:
    """Write the JSON, the markdown and the charts; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = report.started_at.replace(":", "").replace("-", "")
    json_path = directory / f"{stem}.json"
    json_path.write_bytes(report.to_json())
    md_path = directory / f"{stem}.md"
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path, charts(report, directory, stem)


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
