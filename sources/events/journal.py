"""The embedded event bus's journal: its retained events in a file, so `after` resumes across
a restart as it does on Redis.

Events are appended as they are published. The file is kept to the retention (age and
count): read back filtered at start, and compacted the same way once this process has
appended `max_length` events or `COMPACT_SECONDS` have passed, so it never holds personal
data much past `C360_EVENTS_RETENTION_SECONDS`. Several processes may share it (workers of
one data directory): appends hold a shared lock on `<file>.lock`, a compaction an exclusive
one, and compacting filters the file itself (every process's lines), never rewrites it from
one process's memory. Readable by its owner only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from sources.events.envelope import Event

# The longest a journal goes without being compacted to its retention.
COMPACT_SECONDS = 600.0


class Journal:
    def __init__(self, path: Path, *, max_length: int, retention_seconds: float) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._max_length = max_length
        self._retention = retention_seconds
        self._appended = 0
        self._compacted_at = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)

    def restore(self) -> list[tuple[float, Event]]:
        """The retained events, oldest first (the file compacted to them)."""
        return self._compact()

    def append(self, at: float, events: Sequence[Event]) -> None:
        """Add published events. A write to the page cache, not a disk flush: a restart
        keeps it, a power cut may not (the outboxes keep every event regardless)."""
        data = b"".join(_line(at, event) for event in events)
        with self._locked(fcntl.LOCK_SH):
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, data)
            finally:
                os.close(descriptor)
        self._appended += len(events)
        if self._appended >= self._max_length or at - self._compacted_at >= COMPACT_SECONDS:
            self._compact()

    def _compact(self) -> list[tuple[float, Event]]:
        with self._locked(fcntl.LOCK_EX):
            kept = self._retained()
            temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(descriptor, b"".join(_line(at, event) for at, event in kept))
            finally:
                os.close(descriptor)
            os.replace(temporary, self.path)
        self._appended = 0
        self._compacted_at = time.time()
        return kept

    def _retained(self) -> list[tuple[float, Event]]:
        horizon = time.time() - self._retention
        kept: list[tuple[float, Event]] = []
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return kept
        for line in lines:
            try:
                entry = orjson.loads(line)
                at = float(entry["at"])
                if at >= horizon:
                    kept.append((at, Event.from_json(entry["event"])))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: the rest stands
        return kept[-self._max_length :]

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        descriptor = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, mode)
            yield
        finally:
            os.close(descriptor)  # and with it the lock


def _line(at: float, event: Event) -> bytes:
    return orjson.dumps({"at": at, "event": event.to_json()}) + b"\n"
