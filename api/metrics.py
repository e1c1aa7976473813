"""Prometheus metrics on /metrics: requests, latencies and source round trips.

Each app has its own registry, so several apps in one process (the tests) do not collide.
The figures are per process: run one worker per container, or scrape each worker. With
`metrics_token` set, a scraper must send it as `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access import request_id as new_request_id
from api.access import write_line
from api.shared_metrics import SharedMetrics
from resolvers.errors import INTERNAL, request_errors
from sources.cache.entity import EntityCache
from sources.cache.responses import ResponseCache
from sources.catalog import NAMES
from sources.events.hub import Hub
from sources.roundtrips import RoundTrips

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Request paths are labels only when they are routes of c360: a scanner cannot blow up the
# label set with made-up paths.
KNOWN_PATHS = frozenset({"/graphql", "/events", "/healthz", "/readyz", "/metrics"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
MAX_OPERATION_LABELS = 100


class _RoundTripCollector(Collector):
    def __init__(self, round_trips: RoundTrips) -> None:
        self._round_trips = round_trips

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "c360_source_round_trips",
            "Round trips to each source, counted at the driver.",
            labels=["source"],
        )
        for source in NAMES:
            family.add_metric([source], self._round_trips.counts[source])
        yield family


class _CacheCollector(Collector):
    def __init__(self, cache: EntityCache) -> None:
        self._cache = cache

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "c360_cache_events",
            "Entity cache events per source: hit, miss, stale (served past TTL because the "
            "source failed), invalidation, error (the cache store failed).",
            labels=["source", "event"],
        )
        for (source, event), count in sorted(self._cache.counts.items()):
            family.add_metric([source, event], count)
        yield family


class _ResponseCacheCollector(Collector):
    def __init__(self, responses: ResponseCache) -> None:
        self._responses = responses

    def collect(self) -> Iterable[Metric]:
        events = CounterMetricFamily(
            "c360_response_cache_events",
            "Response cache events: hit (answered from the cache), miss (executed), stored "
            "(an answer kept), error (the cache store failed). Invalidations are the entity "
            "cache's (c360_cache_events), which invalidate answers with the entities.",
            labels=["event"],
        )
        for event, count in sorted(self._responses.counts.items()):
            events.add_metric([event], count)
        yield events
        stored = CounterMetricFamily(
            "c360_response_cache_stored_bytes", "Bytes of the answers the response cache kept."
        )
        stored.add_metric([], self._responses.bytes_stored)
        yield stored


class _HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterable[Metric]:
        live = GaugeMetricFamily(
            "c360_subscriptions", "Subscriptions this process is delivering events to now."
        )
        live.add_metric([], self._hub.subscribers)
        yield live


class Metrics:
    """The registry of one app and the instruments the middleware feeds.

    With `shared` (a directory, `C360_METRICS_DIR`), /metrics answers the sum over every
    worker writing snapshots there (`api.shared_metrics`); without, this process's own.
    """

    def __init__(
        self,
        token: SecretStr | None = None,
        *,
        shared: Path | None = None,
        max_operations: int = MAX_OPERATION_LABELS,
    ) -> None:
        # Compared as bytes: compare_digest takes str only when it is ASCII.
        self._token = token.get_secret_value().encode() if token is not None else None
        self.registry = CollectorRegistry()
        self.shared = SharedMetrics(shared, self.registry) if shared is not None else None
        self._operations: set[str] = set()
        # (path, status) -> its request counter and its path's latency histogram.
        self._answered: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._max_operations = max_operations
        self.operation_latency = Histogram(
            "c360_graphql_operation_duration_seconds",
            "Time to answer a GraphQL request over HTTP, by operation name (admitted operations "
            "of authenticated callers): the first "
            f"{max_operations} names a process sees, then `other`; `(unnamed)` for an "
            "operation without a name, `(batch)` for a batch.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "c360_http_requests",
            "HTTP requests answered.",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "c360_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def answered(self, path: str, status: int, seconds: float) -> None:
        """Count and time one HTTP answer."""
        # The labelled children, kept: `labels()` checks and converts its arguments and takes a
        # lock on every call, which cost more than the count itself.
        children = self._answered.get((path, status))
        if children is None:
            children = (self.requests.labels(path, str(status)), self.latency.labels(path))
            self._answered[(path, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def operation_label(self, name: str) -> str:
        """The label an operation's latency is kept under: its name while the set of names
        is small, `other` beyond it (a client cannot grow the label set without bound)."""
        if name in self._operations:
            return name
        if len(self._operations) < self._max_operations:
            self._operations.add(name)
            return name
        return "other"

    def watch_round_trips(self, round_trips: RoundTrips) -> None:
        """Expose the driver-level round-trip counters of the app's connections."""
        self.registry.register(_RoundTripCollector(round_trips))

    def watch_cache(self, cache: EntityCache) -> None:
        """Expose the entity cache's counters."""
        self.registry.register(_CacheCollector(cache))

    def watch_hub(self, hub: Hub) -> None:
        """Expose how many subscriptions the hub is serving."""
        self.registry.register(_HubCollector(hub))

    def watch_responses(self, responses: ResponseCache) -> None:
        """Expose the response cache's counters."""
        self.registry.register(_ResponseCacheCollector(responses))

    async def endpoint(self, request: Request) -> Response:
        """The Prometheus text exposition; 401 without the bearer token, when one is set."""
        if self._token is not None and not self._authorized(request):
            return Response(
                "/metrics needs `Authorization: Bearer <C360_METRICS_TOKEN>`.\n",
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="metrics"'},
            )
        if self.shared is not None:
            return Response(self.shared.exposition(), media_type=CONTENT_TYPE)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)

    def _authorized(self, request: Request) -> bool:
        assert self._token is not None
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credential.strip().encode(), self._token
        )


class MetricsMiddleware:
    """Pure ASGI middleware counting and timing every HTTP request, writing its access line
    when the access log is on (`api.access`), and giving every answer an `X-Request-ID`: the
    GraphQL endpoint sets its own (the id its logs and audit entries carry); any other answer
    (another route, a 404, a refusal before the endpoint) gets the caller's or a new one."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None
        sent: list[bytes] = []  # the body, kept only for the access line
        request_id: str | None = None
        access_log = self.access_log

        async def send_and_note(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                request_id = _request_id(message)
                if request_id is None:
                    request_id = new_request_id(_header(scope, b"x-request-id"))
                    headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                    message = {**message, "headers": headers}
            elif access_log and message["type"] == "http.response.body":
                sent.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            if status is not None:
                raise  # the answer had begun: nothing else can be sent on it
            # Answered here rather than by Starlette's outermost handler, whose plain-text 500
            # would carry neither the request id nor the error shape of every other answer.
            named = scope.get("state", {}).get("request_id")  # the GraphQL endpoint's, if set
            failed = named or new_request_id(_header(scope, b"x-request-id"))
            log.exception("request %s to %s failed", failed, scope["path"])
            body = orjson.dumps(request_errors("Internal server error.", 500, INTERNAL))
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", failed.encode()),
            ]
            await send_and_note({"type": "http.response.start", "status": 500, "headers": headers})
            await send_and_note({"type": "http.response.body", "body": body})
        finally:
            seconds = time.perf_counter() - started
            path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
            self.metrics.answered(path, status or 500, seconds)
            # Set by the GraphQL endpoint once it knows the operation.
            operation = scope.get("state", {}).get("operation")
            if operation is not None:
                label = self.metrics.operation_label(operation)
                self.metrics.operation_latency.labels(label).observe(seconds)
            if access_log:
                traceparent = _header(scope, b"traceparent")
                write_line(scope, status, seconds, b"".join(sent), request_id, traceparent)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _request_id(start: Message) -> str | None:
    for name, value in start.get("headers", ()):
        if name == b"x-request-id":
            request_id: str = value.decode("latin-1")
            return request_id
    return None
