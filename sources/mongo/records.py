"""Plain, immutable records the MongoDB source hands to the graph."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    channel: str
    granted: bool
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    type: str
    value: str


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    customer_id: int
    traits: dict[str, str]
    segments: list[str]
    preferred_channels: list[str]
    language: str | None
    consents: list[ConsentRecord]
    identities: list[IdentityRecord]
    lifetime_value_minor: int
    currency: str
    last_seen_at: dt.datetime | None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ProfileRecord:
        preferences = doc.get("preferences", {})
        computed = doc.get("computed", {})
        return cls(
            customer_id=doc["_id"],
            traits={str(k): str(v) for k, v in doc.get("traits", {}).items()},
            segments=list(doc.get("segments", [])),
            preferred_channels=list(preferences.get("channels", [])),
            language=preferences.get("language"),
            consents=[
                ConsentRecord(c["channel"], bool(c["granted"]), c["updated_at"])
                for c in doc.get("consents", [])
            ],
            identities=[IdentityRecord(i["type"], i["value"]) for i in doc.get("identities", [])],
            lifetime_value_minor=int(computed.get("lifetime_value_minor", 0)),
            currency=computed.get("currency", "EUR"),
            last_seen_at=computed.get("last_seen_at"),
        )


@dataclass(frozen=True, slots=True)
class InteractionRecord:
    id: str
    customer_id: int
    type: str
    channel: str
    occurred_at: dt.datetime
    attributes: dict[str, str]

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> InteractionRecord:
        return cls(
            id=str(doc["_id"]),
            customer_id=doc["customer_id"],
            type=doc["type"],
            channel=doc["channel"],
            occurred_at=doc["occurred_at"],
            attributes={str(k): str(v) for k, v in doc.get("attributes", {}).items()},
        )


@dataclass(frozen=True, slots=True)
class TicketEventRecord:
    at: dt.datetime
    status: str
    note: str | None


@dataclass(frozen=True, slots=True)
class TicketRecord:
    id: str
    customer_id: int
    subject: str
    status: str
    priority: str
    channel: str
    assignee: str | None
    eta: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    history: list[TicketEventRecord]

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> TicketRecord:
        return cls(
            id=str(doc["_id"]),
            customer_id=doc["customer_id"],
            subject=doc["subject"],
            status=doc["status"],
            priority=doc["priority"],
            channel=doc["channel"],
            assignee=doc.get("assignee"),
            eta=doc.get("eta"),
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
            history=[
                TicketEventRecord(h["at"], h["status"], h.get("note"))
                for h in doc.get("history", [])
            ],
        )
