"""Drive the service with wrk: closed loop, fixed connections, fixed duration, GraphQL POSTs.

A generated Lua script rotates customer ids (or search prefixes) through a JSON body template
and counts a response as an error when its status is not 200 or its body carries GraphQL
`errors`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from api.settings import Settings
from bench.credentials import bench_authorization
from bench.workloads import Keys

LUA = r"""
local ids = {%(ids)s}
local template = %(template)s
-- Ingestion: each request is a batch of `batch` events with ids unique in the run.
local batch = %(batch)d
local run = "%(run)s"
local expected = %(expected)d
-- Many customers per request: `keys` items, each `key` with a customer id, in one list.
local keys = %(keys)d
local key = %(key)s
local threads = {}
-- Globals, not locals: wrk reads them per thread with thread:get() in done().
counter = 0
errors = 0
offset = 0
stride = 1

function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "%(content_type)s"
  wrk.headers["Accept"] = "application/graphql-response+json"
  wrk.headers["Authorization"] = "%(authorization)s"
%(headers)s
  stride = %(threads)d
end

function request()
  local body = template
  if batch > 0 then
    local events = {}
    for i = 1, batch do
      local index = (offset + (counter * batch + i) * stride) %% #ids + 1
      local id = run .. "-" .. offset .. "-" .. counter .. "-" .. i
      events[i] = string.format(template, id, ids[index])
    end
    body = "[" .. table.concat(events, ",") .. "]"
  elseif keys > 0 then
    local items = {}
    for i = 1, keys do
      local index = (offset + (counter * keys + i) * stride) %% #ids + 1
      items[i] = string.format(key, ids[index])
    end
    body = string.format(template, "[" .. table.concat(items, ",") .. "]")
  elseif #ids > 0 then
    -- Each thread walks its own slice of the ids, so no two threads repeat one.
    local index = (offset + counter * stride) %% #ids + 1
    body = string.format(template, ids[index])
  end
  counter = counter + 1
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= expected or string.find(body, '"errors"', 1, true) then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  local total_errors = 0
  local sent = 0
  for _, thread in ipairs(threads) do
    total_errors = total_errors + thread:get("errors")
    sent = sent + thread:get("counter")
  end
  io.write("WRK_JSON ")
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "bytes": %%d, "errors": %%d, "sent": %%d, ' ..
    '"socket_errors": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d, "max_us": %%d, ' ..
    '"mean_us": %%f}\n',
    summary.requests, summary.duration, summary.bytes, total_errors, sent,
    summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    latency.mean))
end
"""


class WrkMissingError(RuntimeError):
    """wrk is not installed."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    socket_errors: int
    ids_sent: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_binary() -> str:
    """The wrk executable, or WrkMissingError saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissingError(
            "the bench drives the service with wrk: install it (Debian/Ubuntu: "
            "`apt-get install wrk`, macOS: `brew install wrk`) and run again"
        )
    return path


# One ingested event: an interaction for the timeline (the high-volume upstream event).
INGEST_EVENT = {
    "specversion": "1.0",
    "id": "ID_SLOT",
    "source": "urn:bench:webshop",
    "type": "interaction.recorded",
    "subject": "SUBJECT_SLOT",
    "time": "2026-11-01T12:00:00Z",
    "data": {
        "type": "PAGE_VIEW",
        "channel": "WEB",
        "occurred_at": "2026-11-01T12:00:00Z",
        "attributes": {"path": "/bench"},
    },
}


def lua_script(
    query: str,
    ids: Sequence[int | str],
    threads: int,
    *,
    batch: int = 0,
    keys: Keys | None = None,
    variable: str = "id",
    authorization: str = "",
    headers: Sequence[tuple[str, str]] = (),
) -> str:
    """The wrk script: GraphQL POSTs of `query` with `$id` (or `$<variable>`, e.g. a search
    prefix) taken from `ids` in turn (with `keys`, a list of `keys.count` of them), or, with
    `batch`, CloudEvents batches of that many events for customers taken from `ids`."""
    if batch:
        body = orjson.dumps(INGEST_EVENT).decode().replace("%", "%%")
        body = body.replace('"ID_SLOT"', '"%s"').replace('"SUBJECT_SLOT"', '"%s"')
    elif keys is not None:
        body = orjson.dumps({"query": query, "variables": {keys.variable: "KEYS_SLOT"}}).decode()
        body = body.replace("%", "%%").replace('"KEYS_SLOT"', "%s")
    elif ids:
        body = orjson.dumps({"query": query, "variables": {variable: "ID_SLOT"}}).decode()
        body = body.replace("%", "%%").replace('"ID_SLOT"', '"%s"')
    else:
        body = orjson.dumps({"query": query}).decode()
    return LUA % {
        # Lua strings: customer ids and search prefixes alike go into the body as text.
        "ids": ",".join(json.dumps(str(i)) for i in ids),
        "template": json.dumps(body),
        "threads": threads,
        "batch": batch,
        "run": uuid.uuid4().hex[:12],
        "expected": 202 if batch else 200,
        "keys": keys.count if keys else 0,
        "key": json.dumps(keys.item if keys else ""),
        "content_type": "application/cloudevents-batch+json" if batch else "application/json",
        "authorization": authorization,
        "headers": "\n".join(
            f"  wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers
        ),
    }


def run_wrk(
    url: str,
    query: str,
    ids: Sequence[int | str],
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    batch: int = 0,
    keys: Keys | None = None,
    variable: str = "id",
    headers: Sequence[tuple[str, str]] = (),
) -> WrkResult:
    """One closed-loop wrk run against `url`; blocks for `seconds`."""
    threads = max(1, min(threads, connections))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(
            lua_script(
                query,
                ids,
                threads,
                batch=batch,
                keys=keys,
                variable=variable,
                authorization=bench_authorization(Settings()),
                headers=headers,
            ),
            encoding="utf-8",
        )
        completed = subprocess.run(
            [
                wrk_binary(),
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(seconds, 1):.0f}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({completed.returncode}): {completed.stderr or completed.stdout}"
        )
    raw = json.loads(line.removeprefix("WRK_JSON "))
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=raw["errors"],
        socket_errors=raw["socket_errors"],
        ids_sent=raw["sent"],
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000,
    )
