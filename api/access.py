"""The access log: one JSON line per HTTP request, when `C360_ACCESS_LOG` is on.

Off by default: a line per request is work on every request (uvicorn's own text log took about
12% of a busy process), and most deployments have a proxy or a load balancer logging already.
On (`c360 serve --access-log`, or `C360_ACCESS_LOG=true`), each HTTP request writes a line to
the `c360.access` logger (from `api.metrics.MetricsMiddleware`, which times every request), on
standard output unless the logging configuration sends it elsewhere (`status` is null when
the app failed before answering):

    {"time": "2026-12-05T08:15:02.123+00:00", "method": "POST", "path": "/graphql", "status": 200,
     "duration_ms": 3.41, "bytes": 1234, "client": "10.0.0.7", "request_id": "…",
     "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "operations": ["query AgentView"],
     "principal": {"kind": "jwt", "id": "agent-7", "role": "agent"}, "error_codes": []}

`request_id` is the `X-Request-ID` the answer carries (the caller's, or the one c360 made), so
a line leads to the request's own log lines and audit entries. `trace_id` is the W3C
`traceparent`'s, when a gateway sent one. `operations`, `principal` and `error_codes` (each
error's `extensions.code`, in order) are there for GraphQL requests; an operation without a name
is its type alone. No personal data: the line is scrubbed (`api.logs.scrub`), so a token whose
subject is an email address shows `[email]`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import Scope

from api.logs import scrub

LOGGER = "c360.access"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# W3C trace context: version, trace id, parent id, flags (an all-zero trace id is invalid).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")

log = logging.getLogger(LOGGER)


def enable_access_log() -> None:
    """Give the access logger a handler of its own (stdout, the JSON line alone) unless the
    logging configuration gave it one: uvicorn's worker processes configure only theirs."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.INFO)


@dataclass(slots=True)
class Noted:
    """What the GraphQL endpoint learnt of a request, for its access line (in the request's
    `state` as `access`, only while the access log is on)."""

    operations: list[str] = field(default_factory=list)
    principal: dict[str, str | None] | None = None


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` header, None when absent or malformed."""
    if traceparent:
        match = _TRACEPARENT.fullmatch(traceparent.strip().lower())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    return None


def request_trace_id(scope: Scope, traceparent: str | None) -> str | None:
    """A request's trace: its server span's when tracing is on and sampled it (`api.tracing`),
    else the one its caller's `traceparent` names."""
    return scope.get("state", {}).get("trace_id") or trace_id(traceparent)


def error_codes(body: bytes) -> list[str]:
    """The `extensions.code` of each error in a GraphQL answer (or a batch's answers)."""
    if b'"errors"' not in body:
        return []
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    answers = answer if isinstance(answer, list) else [answer]
    codes = []
    for one in answers:
        errors = one.get("errors") if isinstance(one, dict) else None
        for error in errors if isinstance(errors, list) else ():
            extensions = error.get("extensions") if isinstance(error, dict) else None
            code = extensions.get("code") if isinstance(extensions, dict) else None
            codes.append(str(code) if code is not None else "UNKNOWN")
    return codes


def write_line(
    scope: Scope,
    status: int | None,
    seconds: float,
    body: bytes,
    request_id: str | None,
    traceparent: str | None,
) -> None:
    """The access line of one answered (or failed: `status` None) HTTP request."""
    client = scope.get("client")
    line: dict[str, Any] = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "bytes": len(body),
        "client": client[0] if client else None,
        "request_id": request_id,
        "trace_id": request_trace_id(scope, traceparent),
    }
    noted = scope.get("state", {}).get("access")  # `request.state.access`, set by the endpoint
    if isinstance(noted, Noted):
        line["operations"] = noted.operations
        line["principal"] = noted.principal
        line["error_codes"] = error_codes(body)
    log.info(scrub(orjson.dumps(line).decode()))


def request_id(header: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one.

    New ids are this process's random prefix and a counter: unique across instances without
    a uuid4 (and its system call) per request.
    """
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return f"{_PROCESS}-{next(_issued):x}"


_PROCESS = uuid.uuid4().hex[:12]
_issued = itertools.count(1)
