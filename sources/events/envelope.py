"""The one shape every change takes: a CloudEvents 1.0 event.

`id` is unique and makes delivery idempotent; `subject` is the customer id, so events are
ordered per customer; `type` names a registered JSON Schema that `data` satisfies.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

SPEC_VERSION = "1.0"
C360_SOURCE = "urn:c360"


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    source: str
    type: str
    subject: str
    time: dt.datetime
    data: dict[str, Any]
    dataschema: str | None = None
    specversion: str = SPEC_VERSION
    extensions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The structured-mode JSON form (application/cloudevents+json)."""
        body: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time.isoformat(),
            "datacontenttype": "application/json",
            "data": self.data,
        }
        if self.dataschema:
            body["dataschema"] = self.dataschema
        body.update(self.extensions)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Event:
        """An event from its structured-mode JSON (already validated)."""
        known = {
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "data",
            "dataschema",
        }
        return cls(
            id=str(body["id"]),
            source=str(body["source"]),
            type=str(body["type"]),
            subject=str(body["subject"]),
            time=dt.datetime.fromisoformat(str(body["time"])),
            data=dict(body.get("data") or {}),
            dataschema=body.get("dataschema"),
            specversion=str(body.get("specversion", SPEC_VERSION)),
            extensions={k: str(v) for k, v in body.items() if k not in known},
        )


def new_event(
    type: str,
    subject: str | int,
    data: dict[str, Any],
    *,
    source: str = C360_SOURCE,
    dataschema: str | None = None,
) -> Event:
    """A fresh c360 change event, stamped now with a new unique id."""
    return Event(
        id=str(uuid.uuid4()),
        source=source,
        type=type,
        subject=str(subject),
        time=dt.datetime.now(dt.UTC),
        data=data,
        dataschema=dataschema,
    )
