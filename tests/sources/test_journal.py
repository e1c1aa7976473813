"""The embedded bus's journal: read back within retention after a restart, kept to the
retention as it grows, shared safely by the processes of one data directory, owner-only."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from sources.events import journal as journal_module
from sources.events.bus import InProcessBus
from sources.events.envelope import Event, new_event
from sources.events.journal import Journal


def _events(n: int, subject: str = "7") -> list[Event]:
    return [
        new_event("customer.contact_changed", subject, {"email": f"n{i}@x.io"}) for i in range(n)
    ]


async def test_a_restarted_bus_resumes_after_an_event_of_the_last_run(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = InProcessBus(max_length=100, retention_seconds=3600, journal=path)
    sent = _events(3)
    await first.publish(sent)
    again = InProcessBus(max_length=100, retention_seconds=3600, journal=path)
    after = await again.position_of(sent[0].id)
    assert [d.event.id for d in await again.read(after, count=10, block=0)] == [
        e.id for e in sent[1:]
    ]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_it_keeps_only_what_is_retained_by_age_and_count(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    journal = Journal(path, max_length=5, retention_seconds=60)
    journal.append(time.time() - 120, _events(2))  # older than the retention
    journal.append(time.time(), _events(7))
    # The appends reached max_length: compacted to the newest 5 within the retention.
    assert len(path.read_bytes().splitlines()) == 5
    assert len(Journal(path, max_length=5, retention_seconds=60).restore()) == 5


def test_it_is_compacted_by_time_even_when_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    journal = Journal(path, max_length=1000, retention_seconds=0.2)
    journal.restore()
    journal.append(time.time(), _events(3))
    time.sleep(0.3)
    monkeypatch.setattr(journal_module, "COMPACT_SECONDS", 0.0)
    journal.append(time.time(), _events(1))
    assert len(path.read_bytes().splitlines()) == 1  # the aged-out three are gone


def test_processes_sharing_it_keep_each_others_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    one = Journal(path, max_length=1000, retention_seconds=3600)
    two = Journal(path, max_length=1000, retention_seconds=3600)
    one.append(time.time(), _events(2, "1"))
    two.append(time.time(), _events(2, "2"))
    one.restore()  # a compaction by one process
    two.append(time.time(), _events(1, "2"))
    subjects = [
        event.subject
        for _, event in Journal(path, max_length=1000, retention_seconds=3600).restore()
    ]
    assert subjects == ["1", "1", "2", "2", "2"]
