"""The access log: one JSON line per HTTP request, when `C360_ACCESS_LOG` is on.

Off by default: a line per request is work on every request (uvicorn's own text log took about
12% of a busy process), and most deployments have a proxy or a load balancer logging already.
On (`c360 serve --access-log`, or `C360_ACCESS_LOG=true`), each HTTP request writes a line to
the `c360.access` logger (from `api.metrics.MetricsMiddleware`, which times every request), on
standard output unless the logging configuration sends it elsewhere (`status` is null when
the app failed before answering):

    {"time": "2026-12-05T08:15:02.123+00:00", "method": "POST", "path": "/graphql", "status": 200,
     "duration_ms": 3.41, "bytes": 1234, "client": "10.0.0.7", "request_id": "…"}

`request_id` is the `X-Request-ID` the answer carries (the caller's, or the one c360 made), so
a line leads to the request's own log lines and audit entries.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
import sys
import uuid

import orjson
from starlette.types import Scope

LOGGER = "c360.access"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

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


def write_line(
    scope: Scope, status: int | None, seconds: float, sent: int, request_id: str | None
) -> None:
    """The access line of one answered (or failed: `status` None) HTTP request."""
    client = scope.get("client")
    line = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "bytes": sent,
        "client": client[0] if client else None,
        "request_id": request_id,
    }
    log.info(orjson.dumps(line).decode())


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
