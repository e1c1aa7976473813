"""How c360 logs: text for `make run`, JSON lines for a log pipeline (`C360_LOG_FORMAT=json`).

In JSON, every record is one line: `time`, `level`, `logger`, `message`, the `request_id` of the
request it was written for (when one is running) and, for a failure, `error` (the traceback).
The access log's request records (`api.access`) are JSON in both formats.

No email address or phone number leaves through a log line: whatever a message or a traceback
carries, they are replaced (`scrub`) before the line is written, and SQL statements' parameters
are kept out of SQLAlchemy's error messages (`hide_parameters`). Customer ids stay: they are
how an operator finds a customer's requests.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
import sys
from enum import StrEnum
from typing import Any

import orjson
from opentelemetry import trace

from sources import tracing

# The request a log record is written for: set by the GraphQL endpoint as a request begins.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Any local part and domain (Unicode included, as the domain accepts them).
_EMAIL = re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+\.[^\W\d_]{2,}")
# E.164, as c360 stores phones, or as written: a "+" and 7 to 15 digits, with spaces, dashes,
# dots or parentheses between.
_PHONE = re.compile(r"\+\d(?:[ ().-]*\d){6,14}")


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def scrub(text: str) -> str:
    """`text` with email addresses and phone numbers replaced by what they are."""
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    if "+" in text:
        text = _PHONE.sub("[phone]", text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record, personal data scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        if tracing.TRACER is not None:
            span = trace.get_current_span().get_span_context()
            if span.trace_flags.sampled:  # a trace that is exported: one an operator can open
                line["trace_id"] = f"{span.trace_id:032x}"
                line["span_id"] = f"{span.span_id:016x}"
        if record.exc_info:
            line["error"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()


class TextFormatter(logging.Formatter):
    """`LEVEL logger: message`, personal data scrubbed."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format is LogFormat.JSON else TextFormatter()


def configure(log_format: LogFormat, level: int = logging.INFO) -> None:
    """Send every logger's records to standard error in `log_format` (idempotent), uvicorn's
    included. Like `logging.basicConfig`, it leaves a logging set up by someone else (a test
    runner, an application embedding c360) as it is."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "c360", False)), None)
    if handler is None:
        if root.handlers:
            return
        handler = logging.StreamHandler(sys.stderr)
        handler.c360 = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(formatter(log_format))
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        for old in list(uvicorn_logger.handlers):
            uvicorn_logger.removeHandler(old)
        uvicorn_logger.propagate = True
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
