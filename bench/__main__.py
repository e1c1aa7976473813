"""`python -m bench`: prepare the dataset, start c360, run the workloads, write the report.

Over 400 lines: a bench run's orchestration (dataset, floors, the service, each workload, the
peer, the report) is one story told in order; the pieces it drives live in the other bench
modules."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson

from bench.churn import ChurnRun, churning
from bench.dataset import (
    DatasetError,
    bench_settings,
    customer_ids,
    prepare_dataset,
    request_keys,
)
from bench.floor import measure_floor
from bench.otlp import otlp_receiver
from bench.peer import (
    PEER_IDS,
    PeerUnavailableError,
    Recording,
    describe,
    difference,
    graphql_js_floors,
    peer_node,
    record,
    running_peer,
)
from bench.report import (
    PeerResult,
    Report,
    WorkloadResult,
    judge,
    markdown,
    ratio,
    timestamp,
    write,
)
from bench.server import PeakRss, Service, running_service
from bench.subscribers import run_subscribers
from bench.workloads import HOT_SET, WORKLOADS, Rotation, Workload
from bench.wrk import WrkMissingError, WrkResult, run_wrk, wrk_binary
from sources.catalog import NAMES

# Cold first, before any other workload has touched its customers.
ORDER = (
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
)
# Warm-up rounds a workload is given before it is measured anyway (see warm_up).
WARMUP_ROUNDS = 5


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(
    service: Service,
    workload: Workload,
    ids: Sequence[int | str],
    *,
    connections: int,
    seconds: float,
    warmup: float,
    floor: float | None,
) -> WorkloadResult:
    """One workload at one concurrency: warm up, then a measured wrk run."""
    url = f"{service.url}{workload.path}"
    seconds = max(seconds, workload.min_seconds)

    def drive(keys: Sequence[int | str], duration: float) -> WrkResult:
        return run_wrk(
            url,
            workload.query,
            keys,
            connections=connections,
            seconds=duration,
            batch=workload.batch,
            keys=workload.keys,
            variable=workload.variable,
            headers=workload.headers,
        )

    if warmup > 0:
        # Cold ids must stay unseen: warm the pools with the hot set instead.
        cold = workload.rotation is Rotation.COLD
        warm_up(workload, customer_ids(HOT_SET, "hot") if cold else ids, connections, warmup, drive)
    before = service.settled_counters()
    with PeakRss(service).watching() as rss, _changes(service, workload, ids, seconds) as churn:
        run = drive(ids, seconds)
    after = service.settled_counters()
    # Divided by what the server answered in the window, so requests in flight when wrk
    # stopped count on both sides of the ratio.
    answered = after["requests"] - before["requests"]
    cache = "answer" if workload.answered else "cache"
    per_request = {
        source: (after.get(source, 0) - before.get(source, 0)) / answered if answered else 0
        for source in NAMES
    }
    return WorkloadResult(
        workload=workload.name,
        connections=connections,
        duration_s=run.seconds,
        requests=run.requests,
        requests_per_second=run.requests_per_second,
        latency_p50_ms=run.p50_ms,
        latency_p95_ms=run.p95_ms,
        latency_p99_ms=run.p99_ms,
        latency_max_ms=run.max_ms,
        errors=run.errors + run.socket_errors + (len(churn.failures) if churn else 0),
        round_trips_per_request=per_request,
        # The response cache's when the workload is answered from it, else the entity cache's.
        cache_hit_ratio=_ratio(
            after[f"{cache}_hit"] - before[f"{cache}_hit"],
            after[f"{cache}_miss"] - before[f"{cache}_miss"],
        ),
        peak_rss_mb=rss.peak_mb,
        floor_ops_per_second=floor,
        floor_ratio=run.requests_per_second / floor if floor else None,
        events_per_second=run.requests_per_second * workload.batch if workload.batch else None,
        ids_wrapped=bool(ids) and run.ids_sent > len(ids) and workload.rotation is Rotation.COLD,
        changes=churn.changes if churn else None,
        change_checks=churn.checks if churn else None,
        # Not measured when no change went through: no change, nothing to be stale about.
        stale_answers=churn.stale if churn and churn.changes else None,
    )


def warm_up(
    workload: Workload,
    ids: Sequence[int | str],
    connections: int,
    seconds: float,
    drive: Callable[[Sequence[int | str], float], WrkResult],
) -> None:
    """Warm-up rounds until one answers without an error and, over the hot set, answers every
    id. A request that failed in the warm-up (a vendor call that timed out on a busy machine)
    left its entity or its answer uncached, so the measured run would fetch it and report a
    miss against a cache it calls warm."""
    # wrk's one thread sends the ids in turn, each connection with one request in flight:
    # this many answers include one for every id.
    needed = len(ids) + connections if workload.rotation is Rotation.HOT else 0
    for attempt in range(1, WARMUP_ROUNDS + 1):
        run = drive(ids, seconds)
        failed = run.errors + run.socket_errors
        if not failed and run.requests >= needed:
            return
        say(
            f"bench: {workload.name}: warm-up round {attempt} of at most {WARMUP_ROUNDS}: "
            f"{failed} of {run.requests} requests failed"
            + (f", {needed} answers needed to reach the hot set" if needed else "")
        )
    say(f"bench: {workload.name}: not warm after {WARMUP_ROUNDS} warm-up rounds; measuring")


@contextmanager
def _changes(
    service: Service, workload: Workload, ids: Sequence[int | str], seconds: float
) -> Iterator[ChurnRun | None]:
    """The workload's changes and their checks while the block runs, if it makes any."""
    if not workload.churn:
        yield None
        return
    customers = sorted({int(i) for i in ids})
    rate = workload.churn * len(customers)
    with churning(service.url, customers, rate=rate, seconds=seconds) as churn:
        yield churn
    for failure in churn.failures:
        say(f"bench: {workload.name}: {failure}")
    if churn.example:
        say(f"bench: {workload.name}: stale answer: {churn.example}")


def measure_live(
    service: Service,
    workload: Workload,
    ids: list[int],
    *,
    subscribers: int,
    rate: float,
    seconds: float,
) -> WorkloadResult:
    """The subscriptions workload: WebSocket subscribers, changes at a fixed rate."""
    with PeakRss(service).watching() as rss:
        run = asyncio.run(
            run_subscribers(service.url, ids, subscribers=subscribers, rate=rate, seconds=seconds)
        )
    latencies = run.latencies_ms

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))] if latencies else 0.0

    return WorkloadResult(
        workload=workload.name,
        connections=subscribers,
        duration_s=seconds,
        requests=run.delivered,
        requests_per_second=run.delivered / seconds,
        latency_p50_ms=percentile(0.50),
        latency_p95_ms=percentile(0.95),
        latency_p99_ms=percentile(0.99),
        latency_max_ms=latencies[-1] if latencies else 0.0,
        errors=run.lost,
        round_trips_per_request={},
        cache_hit_ratio=None,
        peak_rss_mb=rss.peak_mb,
        subscribers=subscribers,
        events_lost=run.lost,
    )


def measure_peer(
    url: str,
    workload: Workload,
    ids: Sequence[int | str],
    *,
    connections: int,
    seconds: float,
    warmup: float,
) -> PeerResult:
    """The peer under the workload's wrk script at c360's concurrency: warm up (V8 compiles
    as it goes), then a measured run."""

    def drive(duration: float) -> WrkResult:
        return run_wrk(
            url,
            workload.query,
            ids,
            connections=connections,
            seconds=duration,
            keys=workload.keys,
            variable=workload.variable,
            headers=workload.headers,
        )

    if warmup > 0:
        drive(warmup)
    run = drive(max(seconds, workload.min_seconds))
    return PeerResult(
        connections=connections,
        requests_per_second=run.requests_per_second,
        latency_p50_ms=run.p50_ms,
        latency_p99_ms=run.p99_ms,
        errors=run.errors + run.socket_errors,
        ratio=None,
        difference=None,
    )


def compare_with_peer(
    node: str,
    recordings: dict[str, Recording],
    results: list[WorkloadResult],
    args: argparse.Namespace,
) -> None:
    """Run the peer over c360's recorded answers and put its figures beside c360's."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recordings.json"
        path.write_bytes(orjson.dumps(recordings))
        say("bench: starting the peer (Apollo Server 5) ...")
        with running_peer(node, path, args.output / "logs" / "peer.log") as url:
            for result in results:
                if result.workload not in recordings:
                    continue
                workload = WORKLOADS[result.workload]
                say(f"bench: peer, {workload.name}, {result.connections} connections ...")
                differs = difference(url, recordings[workload.name])
                if differs is not None:
                    say(f"bench: the peer's answer to {workload.name} is not c360's: {differs}")
                peer = measure_peer(
                    url,
                    workload,
                    request_keys(args.customers, workload.rotation)[:PEER_IDS],
                    connections=result.connections,
                    seconds=args.duration,
                    warmup=args.warmup,
                )
                peer.ratio = ratio(result.requests_per_second, peer.requests_per_second)
                peer.difference = differs
                result.peer = peer
        floors: dict[str, float] = {}
        if not args.no_floor:
            say("bench: graphql-js floors ...")
            floors = graphql_js_floors(node, path, seconds=args.floor_seconds)
    for result in results:
        if result.peer is not None:
            result.peer.floor_ops_per_second = floors.get(result.workload)
            result.peer.floor_ratio = ratio(
                result.floor_ops_per_second, floors.get(result.workload)
            )


def _ratio(hits: float, misses: float) -> float | None:
    """Hits over lookups; None when the cache saw no lookup (it is off, or nothing was read)."""
    return hits / (hits + misses) if hits + misses else None


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(args: argparse.Namespace) -> int:
    try:
        wrk_binary()
    except WrkMissingError as error:
        say(f"bench: {error}")
        return 2
    names = [n for n in ORDER if n in (args.workload or ORDER)]
    settings = bench_settings(args.customers, args.data_dir)
    say(f"bench: dataset of {args.customers:,} customers in {settings.data_dir} ...")
    try:
        seeded = prepare_dataset(settings, args.customers)
    except DatasetError as error:
        say(f"bench: {error}")
        return 2
    say("bench: dataset seeded" if seeded else "bench: dataset reused")

    node: str | None = None
    peer = "not run (--no-peer)"
    peer_notes: list[str] = []
    if not args.no_peer:
        try:
            node = peer_node()
            peer = describe(node)
        except PeerUnavailableError as error:
            peer = f"not run: {error}"
            say(f"bench: running without the peer: {error}")

    floors: dict[str, float] = {}
    if not args.no_floor:
        # Not for a workload answered from the response cache: its document's floor is
        # agent360-warm's, and no execution is what it measures.
        floored = (
            n
            for n in names
            if not (WORKLOADS[n].batch or WORKLOADS[n].live or WORKLOADS[n].answered)
        )
        for name in floored:
            workload = WORKLOADS[name]
            ids = request_keys(args.customers, workload.rotation)
            say(f"bench: engine floor of {name} ...")
            floors[name] = asyncio.run(
                measure_floor(settings, workload, ids[:200], seconds=args.floor_seconds)
            )

    postgres = settings.resolved_database_url().startswith("postgresql")
    results: list[WorkloadResult] = []
    sweep: list[WorkloadResult] = []
    started = timestamp()
    say(f"bench: starting c360 ({args.workers} worker(s)) ...")
    receiver = otlp_receiver() if args.tracing else contextlib.nullcontext(None)
    with (
        receiver as collecting,
        running_service(
            settings,
            workers=args.workers,
            log_dir=args.output / "logs",
            traces_to=collecting[0] if collecting else None,
        ) as service,
    ):
        for index, name in enumerate(names, 1):
            workload = WORKLOADS[name]
            if workload.live:
                say(
                    f"bench: [{index}/{len(names)}] {name}, {args.subscribers} subscribers, "
                    f"{args.event_rate:g} changes/s for {args.duration:.0f} s ..."
                )
                result = measure_live(
                    service,
                    workload,
                    customer_ids(args.customers, workload.rotation),
                    subscribers=args.subscribers,
                    rate=args.event_rate,
                    seconds=args.duration,
                )
                results.append(result)
                continue
            connections = args.connections or workload.connections
            say(
                f"bench: [{index}/{len(names)}] {name}, {connections} connections, "
                f"{args.duration:.0f} s ..."
            )
            result = measure(
                service,
                workload,
                request_keys(args.customers, workload.rotation),
                connections=connections,
                seconds=args.duration,
                warmup=args.warmup,
                floor=floors.get(name),
            )
            results.append(result)
        if "agent360-warm" in names:
            workload = WORKLOADS["agent360-warm"]
            for connections in args.sweep:
                say(f"bench: agent360-warm sweep, {connections} connections ...")
                sweep.append(
                    measure(
                        service,
                        workload,
                        customer_ids(args.customers, workload.rotation),
                        connections=connections,
                        seconds=args.duration,
                        # Warm again: ingest and subscriptions changed the hot set since.
                        warmup=args.warmup,
                        floor=floors.get("agent360-warm"),
                    )
                )
        # After c360's runs, so recording neither warms agent360-cold's customers nor adds to
        # c360's figures; ids as the engine floor's, so both floors execute the same data.
        recordings: dict[str, Recording] = {}
        for result in results if node else []:
            workload = WORKLOADS[result.workload]
            # Not for churn: the peer would serve a run without its changes.
            if not (workload.batch or workload.live or workload.churn):
                say(f"bench: recording c360's answers to {workload.name} for the peer ...")
                ids = request_keys(args.customers, workload.rotation)[:PEER_IDS]
                try:
                    recordings[workload.name] = record(service.url, workload, ids)
                except RuntimeError as error:
                    # The peer cannot serve an answer c360 did not give; the run goes on.
                    say(f"bench: no peer for {workload.name}: {error}")
                    peer_notes.append(f"no peer for {workload.name}: {error}")
    if node is not None and recordings:
        try:
            compare_with_peer(node, recordings, results, args)
        except RuntimeError as error:
            say(f"bench: the peer failed: {error}")
            peer_notes.append(f"the peer failed: {error}")
    # Judged once the peer has run: some targets are ratios to its figures.
    for result in results:
        result.targets = judge(result, postgres, args.customers)
    report = Report(
        started_at=started,
        environment={
            "customers": args.customers,
            "sql": "PostgreSQL" if postgres else "SQLite",
            "mongo": "MongoDB (C360_MONGO_URL)" if settings.mongo_url else "embedded SecantusDB",
            "vendors": "simulator process" if settings.simulated_vendors() else "configured APIs",
            "cache": (
                "off"
                if not settings.cache_enabled
                else "Redis"
                if settings.redis_url
                else "in-process"
            ),
            "workers": args.workers,
            "cpus": os.cpu_count(),
            "duration_s": args.duration,
            "python": platform.python_version(),
            "commit": _commit(),
            "peer": "; ".join([peer, *peer_notes]),
            "tracing": (
                f"on: {collecting[1].requests:,} OTLP/HTTP exports "
                f"({collecting[1].size / 1e6:,.1f} MB) to a local receiver"
                if collecting
                else "off"
            ),
        },
        results=results,
        sweep=sweep,
    )
    json_path, md_path, chart_paths = write(report, args.output)
    print(markdown(report))
    say(f"bench: wrote {json_path}, {md_path}, " + ", ".join(str(p) for p in chart_paths))
    return 0


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure c360 over real sockets with wrk; see bench/README.md.",
    )
    parser.add_argument(
        "--workload",
        action="append",
        choices=list(WORKLOADS),
        help="run only this workload (repeatable; default: all)",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=10_000,
        help="dataset scale (default 10000; reused when already seeded)",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per measured run (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of warm-up before each workload (default 2)",
    )
    parser.add_argument("--connections", type=int, help="override every workload's concurrency")
    parser.add_argument("--workers", type=int, default=1, help="c360 worker processes (default 1)")
    parser.add_argument(
        "--subscribers",
        type=int,
        default=1000,
        help="WebSocket subscribers of the subscriptions workload (default 1000)",
    )
    parser.add_argument(
        "--event-rate",
        type=float,
        default=20.0,
        help="changes per second during the subscriptions workload (default 20)",
    )
    parser.add_argument(
        "--sweep",
        type=lambda s: [int(c) for c in s.split(",") if c],
        default=[1, 4, 16, 64],
        help="agent360-warm concurrencies for the throughput chart "
        "(default 1,4,16,64; empty to skip)",
    )
    parser.add_argument(
        "--floor-seconds",
        type=float,
        default=3.0,
        help="seconds of in-process execution for each engine floor (default 3)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the engine floor")
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="trace every request, exporting spans over OTLP/HTTP to a receiver the bench runs "
        "(to measure what tracing costs; off by default, as in c360)",
    )
    parser.add_argument(
        "--no-peer",
        action="store_true",
        help="skip the peer (Apollo Server 5 over c360's recorded answers; see bench/README.md)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the embedded stores keep the bench data "
        "(default var/bench-<customers>, or C360_DATA_DIR)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("bench/results"),
        help="where the report goes (default bench/results)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(argv))


if __name__ == "__main__":
    raise SystemExit(main())
