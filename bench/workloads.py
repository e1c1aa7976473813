"""The named workloads: what each user sends, over which customers, at what concurrency."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bench.documents import (
    AGENT_QUERY,
    BATCH_QUERY,
    ENTITIES_QUERY,
    ORDERS_PAGE_QUERY,
    SEARCH_QUERY,
    TYPENAME_QUERY,
)


class Rotation(StrEnum):
    """Which customer ids the requests of a workload go through."""

    NONE = "none"  # the document takes no customer id
    HOT = "hot"  # a hot set of 100 customers, over and over (an agent's busy morning)
    COLD = "cold"  # customers not seen before in the run, each once
    ALL = "all"  # every customer in turn
    PREFIXES = "prefixes"  # no ids: what agents type into search (see dataset.search_prefixes)


HOT_SET = 100
# Sent by the workloads that measure execution (the engine, as the peer executes each request):
# it bypasses the response cache, which would otherwise answer what repeats within a run
# (agent360-warm's hot set, batch-100's and entities-100's 100 batches of the rotation).
EXECUTED = (("Cache-Control", "no-cache"),)


@dataclass(frozen=True)
class Target:
    """A performance target from the issues, checked against the measured figures."""

    description: str
    # A figure of the workload's result; `peer.<figure>` for one of the peer's (issue 13's
    # targets are ratios to Apollo Server 5 and graphql-js, measured in the same run).
    metric: str
    limit: float
    higher_is_better: bool
    needs_postgres: bool = False
    # The dataset scale the target speaks of: judged only at this many customers or more.
    min_customers: int = 0


@dataclass(frozen=True)
class Keys:
    """Many customers per request: the list variable `variable` holds `count` items, each the
    JSON `item` with `%s` for a customer id (the ids taken in turn from the rotation)."""

    variable: str
    count: int
    item: str

    def value(self, ids: Sequence[int | str]) -> list[Any]:
        """The variable's value for these customer ids."""
        return [json.loads(self.item % i) for i in ids]


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    query: str
    rotation: Rotation
    connections: int
    targets: tuple[Target, ...] = ()
    # Round trips per request the batching design promises (per source), when it promises any.
    round_trips: dict[str, int] | None = None
    # Ingestion: events per POST /events batch (0: a GraphQL workload on /graphql).
    batch: int = 0
    # Many customers per request (None: one customer id as `$id`, or none).
    keys: Keys | None = None
    # The variable each value of the rotation fills: `$id`, or `$query` for search prefixes.
    variable: str = "id"
    # Subscriptions: WebSocket subscribers instead of wrk (see bench/subscribers.py).
    live: bool = False
    # The shortest measured run that shows anything: an ingest batch takes seconds on the
    # embedded MongoDB, so a shorter run would end before any batch is answered.
    min_seconds: float = 0.0
    # Headers each request sends besides the credential (to c360 and to the peer alike).
    headers: tuple[tuple[str, str], ...] = ()
    # Answered from the response cache: its hit ratio is the one reported, and it has no
    # engine floor of its own (its document's is agent360-warm's).
    answered: bool = False
    # Changes a second to the hot set while the run lasts, as a share of it, each checked
    # against a fresh execution (see bench/churn.py).
    churn: float = 0.0

    @property
    def path(self) -> str:
        return "/events" if self.batch else "/graphql"

    def variables(self, ids: Sequence[int | str]) -> dict[str, Any] | None:
        """The variables of one request about `ids`: one of them, or `keys.count`."""
        if self.keys is not None:
            return {self.keys.variable: self.keys.value(ids)}
        return {self.variable: str(ids[0])} if ids else None


AGENT_ROUND_TRIPS = {"sql": 5, "mongo": 3, "loyalty": 1, "tracking": 1}

_AS_FAST_AS_THE_PEER = Target(
    "at least Apollo Server 5's requests/s at the same connections, same run",
    "peer.ratio",
    1.0,
    higher_is_better=True,
)

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "typename",
            "`{ __typename }`: the cost of the HTTP and GraphQL pipeline itself.",
            TYPENAME_QUERY,
            Rotation.NONE,
            connections=16,
            targets=(
                Target(
                    "at least 1.2x Apollo Server 5's requests/s at 16 connections, same run",
                    "peer.ratio",
                    1.2,
                    higher_is_better=True,
                ),
            ),
            round_trips={"sql": 0, "mongo": 0, "loyalty": 0, "tracking": 0},
        ),
        Workload(
            "agent360-warm",
            "The agent's 360 query over a hot set of 100 customers, entity caches warm, each "
            "answer executed (`Cache-Control: no-cache` bypasses the response cache): the "
            "engine's workload.",
            AGENT_QUERY,
            Rotation.HOT,
            connections=16,
            headers=EXECUTED,
            targets=(
                Target("p99 at most 25 ms at 16 connections", "latency_p99_ms", 25, False),
                Target("service / floor ratio at least 0.6", "floor_ratio", 0.6, True),
                _AS_FAST_AS_THE_PEER,
                Target(
                    "engine floor at least 0.5x graphql-js's floor of the same document and data",
                    "peer.floor_ratio",
                    0.5,
                    higher_is_better=True,
                ),
            ),
            round_trips=AGENT_ROUND_TRIPS,
        ),
        Workload(
            "agent360-cached",
            "The agent's 360 query over the same hot set, answered from the response cache.",
            AGENT_QUERY,
            Rotation.HOT,
            connections=16,
            targets=(
                Target("p99 at most 20 ms at 16 connections", "latency_p99_ms", 20, False),
                Target(
                    "at least 2x Apollo Server 5's requests/s at 16 connections, same run",
                    "peer.ratio",
                    2.0,
                    higher_is_better=True,
                ),
            ),
            round_trips={"sql": 0, "mongo": 0, "loyalty": 0, "tracking": 0},
            answered=True,
        ),
        Workload(
            "agent360-churn",
            "The agent's 360 query over the same hot set, answered from the response cache, "
            "while 10% of those customers change every second (contact changes over HTTP); "
            "after each change the kept answer is checked against a fresh execution.",
            AGENT_QUERY,
            Rotation.HOT,
            connections=16,
            targets=(
                Target(
                    "every answer read after a change reflects it (kept bytes = a fresh "
                    "execution's, with the change)",
                    "stale_answers",
                    0,
                    higher_is_better=False,
                ),
            ),
            answered=True,
            churn=0.1,
        ),
        Workload(
            "agent360-cold",
            "The agent's 360 query over customers not seen before in the run.",
            AGENT_QUERY,
            Rotation.COLD,
            connections=8,
            targets=(
                Target(
                    "p99 at most 60 ms at 8 connections on PostgreSQL",
                    "latency_p99_ms",
                    60,
                    higher_is_better=False,
                    needs_postgres=True,
                ),
            ),
            round_trips=AGENT_ROUND_TRIPS,
        ),
        Workload(
            "orders-page",
            "A frontend's order history page: `orders(first: 20)` with lines and products.",
            ORDERS_PAGE_QUERY,
            Rotation.ALL,
            connections=16,
            targets=(_AS_FAST_AS_THE_PEER,),
            round_trips={"sql": 4, "mongo": 0, "loyalty": 0, "tracking": 0},
        ),
        Workload(
            "customer-search",
            "Agents typing into customer search: `searchCustomers(query:, first: 20)` with 2 to "
            "4 letter prefixes of the seeded first and last names (which also start the emails), "
            "in turn.",
            SEARCH_QUERY,
            Rotation.PREFIXES,
            connections=16,
            variable="query",
            targets=(
                # Typing stays live: an answer within 100 ms while 16 agents search at once.
                Target(
                    "p99 at most 100 ms at 16 connections on PostgreSQL at 100,000 customers",
                    "latency_p99_ms",
                    100,
                    higher_is_better=False,
                    needs_postgres=True,
                    min_customers=100_000,
                ),
            ),
            round_trips={"sql": 1, "mongo": 0, "loyalty": 0, "tracking": 0},
        ),
        Workload(
            "batch-100",
            "A service looking up 100 customers per request by id (`customers(ids:)`), with "
            "their profile segments and loyalty tier.",
            BATCH_QUERY,
            Rotation.ALL,
            connections=8,
            headers=EXECUTED,
            targets=(_AS_FAST_AS_THE_PEER,),
            round_trips={"sql": 1, "mongo": 1, "loyalty": 1, "tracking": 0},
            keys=Keys("ids", 100, '"%s"'),
        ),
        Workload(
            "entities-100",
            "An Apollo gateway resolving 100 Customer representations (`_entities`) with their "
            "name, email and loyalty tier.",
            ENTITIES_QUERY,
            Rotation.ALL,
            connections=8,
            headers=EXECUTED,
            targets=(_AS_FAST_AS_THE_PEER,),
            round_trips={"sql": 1, "mongo": 0, "loyalty": 1, "tracking": 0},
            keys=Keys("representations", 100, '{"__typename": "Customer", "id": "%s"}'),
        ),
        Workload(
            "ingest",
            "Upstream systems posting CloudEvents batches of 100 `interaction.recorded` events to "
            "`POST /events`: each event validated, applied in its own MongoDB transaction with "
            "its outbox document, and published.",
            "",
            Rotation.ALL,
            connections=4,
            batch=100,
            min_seconds=6.0,
        ),
        Workload(
            "subscriptions",
            "Agents' live screens: N WebSocket subscribers on `customerChanged` (default 1,000; "
            "`--subscribers`), while contact changes are made at a fixed rate (`--event-rate`); "
            "delivery latency from commit to client, and deliveries lost.",
            "",
            Rotation.ALL,
            connections=0,
            targets=(
                Target(
                    "p99 delivery under 250 ms (target set for 5,000 subscribers)",
                    "latency_p99_ms",
                    250,
                    higher_is_better=False,
                ),
                Target("no delivery lost", "events_lost", 0, higher_is_better=False),
            ),
            live=True,
        ),
    )
}
