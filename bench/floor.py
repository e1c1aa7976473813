"""The engine floor: the workload's documents executed in-process over data in memory.

First the documents run once against the real stores while every loader records what its
batches returned; then they run again and again with loaders that answer from those records.
No I/O and no HTTP is left, so operations per second here is the most the schema and the
execution engine allow on one core, and `service requests/s / floor ops/s` is the share of
that the service keeps after its plumbing (HTTP, drivers, stores) takes its cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from graphql import parse

from api.connections import open_connections
from api.context import create_context, create_loaders
from api.embedded import embedded_stores
from api.engine.replay import Recording, Replay, recording_loaders
from api.execution import Executor
from api.settings import Settings
from bench.credentials import PRINCIPAL
from bench.workloads import Workload
from resolvers.schema import create_schema


def _variables(workload: Workload, ids: Sequence[int | str]) -> list[dict[str, Any] | None]:
    """The variables of each request: one per id, or one per `keys.count` ids."""
    if not ids:
        return [None]
    size = workload.keys.count if workload.keys else 1
    return [workload.variables(ids[start : start + size]) for start in range(0, len(ids), size)]


# One operation of a floor takes milliseconds; one still running after this is stuck.
OPERATION_TIMEOUT = 60.0


@contextlib.asynccontextmanager
async def _bounded(workload: str, phase: str) -> AsyncIterator[None]:
    """One floor operation, failed with what every task was waiting on should it not end."""
    try:
        async with asyncio.timeout(OPERATION_TIMEOUT):
            yield
    except TimeoutError:
        stacks = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(limit=8, file=stacks)
        raise RuntimeError(
            f"a {phase} operation of {workload}'s floor did not end within "
            f"{OPERATION_TIMEOUT:g} s; the tasks were waiting at:\n{stacks.getvalue()}"
        ) from None


async def measure_floor(
    settings: Settings, workload: Workload, ids: Sequence[int | str], *, seconds: float
) -> float:
    """Operations per second of `workload` over `ids`, executed in-process from memory."""
    executor = Executor(create_schema(), settings.engine)
    document = parse(workload.query)
    memory: Recording = {}
    variable_sets = _variables(workload, ids)
    # Recording goes to the sources themselves: through a shared cache it would warm the
    # entries the service's cold workload must not find.
    with embedded_stores(settings.model_copy(update={"cache_enabled": False})) as resolved:
        async with open_connections(resolved) as connections:
            template = create_loaders(connections)
            for variables in variable_sets:
                loaders = recording_loaders(create_loaders(connections), memory)
                context = create_context(connections, principal=PRINCIPAL, loaders=loaders)
                async with _bounded(workload.name, "recording"):
                    result = await executor.execute(
                        document, context, variables=copy.deepcopy(variables)
                    )
                if result.errors:
                    raise RuntimeError(f"floor run of {workload.name} failed: {result.errors[0]}")
            replay = Replay(template, memory)
            # Each operation parses its variables, as a request parses its own (Strawberry's
            # `_entities` takes `__typename` out of each representation it is given).
            bodies = [orjson.dumps(variables) for variables in variable_sets]
            operations = 0
            deadline = time.perf_counter() + seconds
            started = time.perf_counter()
            while time.perf_counter() < deadline:
                for body in bodies:
                    context = create_context(
                        connections, principal=PRINCIPAL, loaders=replay.loaders()
                    )
                    async with _bounded(workload.name, "replay"):
                        result = await executor.execute(
                            document, context, variables=orjson.loads(body)
                        )
                    if result.errors:
                        raise RuntimeError(f"floor replay failed: {result.errors[0]}")
                    operations += 1
            return operations / (time.perf_counter() - started)
