"""The `agent360-churn` workload's changes and checks.

While wrk asks the hot set's agent view (answered from the response cache where kept), a
share of those customers is changed every second: a contact change (`updateCustomerContact`)
giving the customer a new first name, over HTTP, round robin. Each acknowledged change is
checked twice: at once, and again a moment later, when the requests wrk had in flight as the
change committed have finished and would have put their old answers back had the tombstone
rule failed. A check reads the agent view as wrk does (kept answers served) and fresh
(`Cache-Control: no-cache`: executed), and the kept answer must be the fresh one, byte for
byte, with the new name. Anything else is a stale answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import orjson

from api.settings import Settings
from bench.credentials import bench_authorization
from bench.documents import AGENT_QUERY

CHANGE = """mutation($input: UpdateCustomerContactInput!) {
  updateCustomerContact(input: $input) { __typename } }"""
# Long enough for wrk's in-flight requests (p99 ~10 ms) to finish and try to keep their answers.
LATER_SECONDS = 0.25
FRESH = {"cache-control": "no-cache"}


@dataclass
class ChurnRun:
    """What the changes and their checks found."""

    changes: int = 0
    checks: int = 0
    stale: int = 0
    # Changes not made: their customer's previous change was still being checked.
    skipped: int = 0
    # The first stale answer, described (None when every answer reflected its change).
    example: str | None = None
    failures: list[str] = field(default_factory=list)


async def run_churn(
    http: httpx.AsyncClient,
    customer_ids: Sequence[int],
    *,
    rate: float,
    seconds: float,
    run: ChurnRun | None = None,
) -> ChurnRun:
    """Make `rate` changes a second for `seconds` over `customer_ids`, checking each; the
    figures go to `run` (a new one by default) as they come."""
    if len(customer_ids) / rate < 2 * LATER_SECONDS:
        # A customer changed again before its checks end would fail them with no fault.
        raise ValueError(
            f"{len(customer_ids)} customers at {rate:g} changes/s change one again within "
            f"{2 * LATER_SECONDS:g} s: fewer changes or more customers"
        )
    run = run if run is not None else ChurnRun()
    # Open loop: each change starts on time whatever the server's latency, as a stream of
    # changes from upstream would; a customer whose last change is still being checked is
    # left out this time round (a change during its checks would fail them with no fault).
    changes: dict[int, asyncio.Task[None]] = {}
    done: list[asyncio.Task[None]] = []
    begun = time.perf_counter()
    n = 0
    while time.perf_counter() < begun + seconds:
        customer_id = customer_ids[n % len(customer_ids)]
        previous = changes.get(customer_id)
        if previous is None or previous.done():
            task = asyncio.create_task(_change(http, run, customer_id, f"Churn{n}"))
            changes[customer_id] = task
            done.append(task)
        else:
            run.skipped += 1
        n += 1
        await asyncio.sleep(max(0.0, begun + n / rate - time.perf_counter()))
    for outcome in await asyncio.gather(*done, return_exceptions=True):
        if isinstance(outcome, Exception):
            run.failures.append(f"a change or its check failed: {outcome!r}")
    return run


async def _change(
    http: httpx.AsyncClient, run: ChurnRun, customer_id: int, first_name: str
) -> None:
    """Change the customer's first name, then check what it reads, at once and a moment later."""
    response = await http.post(
        "/graphql",
        json={
            "query": CHANGE,
            "variables": {"input": {"customerId": str(customer_id), "firstName": first_name}},
        },
    )
    outcome = response.json().get("data") or {}
    if not (outcome.get("updateCustomerContact") or {}).get("__typename", "").endswith("Success"):
        run.failures.append(f"change of customer {customer_id}: {response.text[:200]}")
        return
    run.changes += 1
    for delay in (0.0, LATER_SECONDS):
        await asyncio.sleep(delay)
        body = {"query": AGENT_QUERY, "variables": {"id": str(customer_id)}}
        kept = (await http.post("/graphql", json=body)).content
        fresh = (await http.post("/graphql", json=body, headers=FRESH)).content
        run.checks += 1
        problem = _problem(kept, fresh, first_name)
        if problem:
            run.stale += 1
            run.example = run.example or f"customer {customer_id}, {delay:g} s after: {problem}"


def _problem(kept: bytes, fresh: bytes, first_name: str) -> str | None:
    """Why `kept` does not reflect the change to `first_name`, or None."""
    customer = (orjson.loads(fresh).get("data") or {}).get("customer") or {}
    if not str(customer.get("name", "")).startswith(f"{first_name} "):
        return f"the executed answer names {customer.get('name')!r}, not {first_name}"
    if kept != fresh:
        kept_name = ((orjson.loads(kept).get("data") or {}).get("customer") or {}).get("name")
        return f"the kept answer (name {kept_name!r}) is not the executed one"
    return None


@contextmanager
def churning(
    base_url: str, customer_ids: Sequence[int], *, rate: float, seconds: float
) -> Iterator[ChurnRun]:
    """Run the changes and checks in a thread of their own while the body runs (wrk, in this
    process's main thread); the run's figures are complete when the block ends."""
    run = ChurnRun()

    async def churn() -> None:
        headers = {"authorization": bench_authorization(Settings())}
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=headers) as http:
                await run_churn(http, customer_ids, rate=rate, seconds=seconds, run=run)
        except Exception as error:
            run.failures.append(f"the changes stopped: {error!r}")

    thread = threading.Thread(target=asyncio.run, args=(churn(),), name="churn", daemon=True)
    thread.start()
    try:
        yield run
    finally:
        thread.join()
