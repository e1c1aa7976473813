"""Types backed by the engagement store: profile, timeline and tickets."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import strawberry

from domain import vocabulary
from resolvers.access import MarketingData, Pii
from resolvers.common import Money, PageInfo
from resolvers.enums import Channel, IdentityType, InteractionType, TicketPriority, TicketStatus
from resolvers.masking import mask_identifier
from sources.mongo.records import (
    InteractionRecord,
    ProfileRecord,
    TicketEventRecord,
    TicketRecord,
)
from sources.paging import Page, PageKey


@strawberry.type(description="A named value: a profile trait or an interaction attribute.")
class KeyValue:
    key: str = strawberry.field(description="The name.")
    value: str = strawberry.field(description="The value, as text.")


@strawberry.type(description="How the customer likes to be contacted.")
class Preferences:
    channels: list[Channel] = strawberry.field(
        description="Preferred channels, most preferred first."
    )
    language: str | None = strawberry.field(description="Preferred language (BCP 47 tag).")


@strawberry.type(description="The customer's consent for contact over one channel.")
class Consent:
    channel: Channel = strawberry.field(description="The channel the consent is for.")
    granted: bool = strawberry.field(description="True when granted, false when withdrawn.")
    updated_at: dt.datetime = strawberry.field(description="When it was last granted or withdrawn.")


@strawberry.type(description="An identifier of the customer in another system.")
class Identity:
    customer_id: strawberry.Private[int]
    type: IdentityType = strawberry.field(description="Which system the identifier belongs to.")
    value: str | None = strawberry.field(
        description="The identifier itself (personal data: masked for analysts).",
        extensions=[Pii(mask_identifier)],
    )


# Segments that serve the customer rather than market to them: kept when marketing consent is
# withdrawn. Every other segment, and every trait, exists to target marketing.
SERVICE_SEGMENTS = frozenset({"vip-service"})
# Consent over any of these channels is consent to marketing contact.
MARKETING_CHANNELS = frozenset(vocabulary.CONSENT_CHANNELS)


@strawberry.type(description="The customer's engagement profile (CDP document).")
class Profile:
    marketing_allowed: strawberry.Private[bool]
    traits: list[KeyValue] = strawberry.field(
        description="Free-form traits, by name; empty while marketing consent is withdrawn.",
        extensions=[MarketingData()],
    )
    segments: list[str] = strawberry.field(
        description="Marketing and service segments; only service segments while marketing "
        "consent is withdrawn.",
        extensions=[MarketingData()],
    )
    preferences: Preferences = strawberry.field(description="Contact preferences.")
    consents: list[Consent] = strawberry.field(description="Consent per channel.")
    identities: list[Identity] = strawberry.field(description="Known identifiers elsewhere.")
    lifetime_value: Money = strawberry.field(description="Computed lifetime value.")
    last_seen_at: dt.datetime | None = strawberry.field(
        description="When the customer was last seen on any channel."
    )

    def without_marketing(self, field_name: str, value: list[object]) -> list[object]:
        """What a field shows while marketing consent is withdrawn."""
        return [s for s in value if s in SERVICE_SEGMENTS] if field_name == "segments" else []

    @classmethod
    def from_record(cls, record: ProfileRecord) -> Profile:
        return cls(
            # Withdrawn means no marketing channel is granted any more.
            marketing_allowed=any(
                c.granted for c in record.consents if c.channel in MARKETING_CHANNELS
            ),
            traits=[KeyValue(key=k, value=v) for k, v in sorted(record.traits.items())],
            segments=record.segments,
            preferences=Preferences(
                channels=[Channel.of(c) for c in record.preferred_channels],
                language=record.language,
            ),
            consents=[
                Consent(channel=Channel.of(c.channel), granted=c.granted, updated_at=c.updated_at)
                for c in record.consents
            ],
            identities=[
                Identity(
                    customer_id=record.customer_id, type=IdentityType.of(i.type), value=i.value
                )
                for i in record.identities
            ],
            lifetime_value=Money.from_minor(record.lifetime_value_minor, record.currency),
            last_seen_at=record.last_seen_at,
        )


@strawberry.type(description="One entry of the customer's interaction timeline.")
class Interaction:
    id: strawberry.ID = strawberry.field(description="Unique id of the interaction.")
    type: InteractionType = strawberry.field(description="What happened.")
    channel: Channel = strawberry.field(description="Where it happened.")
    occurred_at: dt.datetime = strawberry.field(description="When it happened.")
    # Made into KeyValues only when asked for: a timeline page made ~50 per agent query that
    # never selects them.
    details: strawberry.Private[Mapping[str, str]]

    @strawberry.field(description="Details, by name.")
    def attributes(self) -> list[KeyValue]:
        return [KeyValue(key=k, value=v) for k, v in sorted(self.details.items())]

    @classmethod
    def from_record(cls, record: InteractionRecord) -> Interaction:
        return cls(
            id=strawberry.ID(record.id),
            type=InteractionType.of(record.type),
            channel=Channel.of(record.channel),
            occurred_at=record.occurred_at,
            details=record.attributes,
        )


@strawberry.type(description="An interaction with the cursor that points at it.")
class InteractionEdge:
    cursor: str = strawberry.field(description="Opaque cursor of this entry.")
    node: Interaction = strawberry.field(description="The interaction.")


@strawberry.type(description="A page of the timeline, newest first.")
class InteractionConnection:
    edges: list[InteractionEdge] = strawberry.field(description="The entries of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page sits.")

    @classmethod
    def from_page(cls, page: Page[InteractionRecord], key: PageKey) -> InteractionConnection:
        page_info, cursors = PageInfo.of(page, key)
        return cls(
            edges=[
                InteractionEdge(cursor=c, node=Interaction.from_record(r))
                for c, r in zip(cursors, page.items, strict=True)
            ],
            page_info=page_info,
        )


@strawberry.type(description="One change in a ticket's handling.")
class TicketEvent:
    at: dt.datetime = strawberry.field(description="When it changed.")
    status: TicketStatus = strawberry.field(description="The status it changed to.")
    note: str | None = strawberry.field(description="What the handler wrote.")


@strawberry.type(description="A contact-center or field-service ticket.")
class Ticket:
    id: strawberry.ID = strawberry.field(description="Ticket id.")
    subject: str = strawberry.field(description="What the ticket is about.")
    status: TicketStatus = strawberry.field(description="Where it is in its handling.")
    priority: TicketPriority = strawberry.field(description="How urgent it is.")
    channel: Channel = strawberry.field(description="Where it was opened.")
    assignee: str | None = strawberry.field(description="Who handles it, when assigned.")
    eta: dt.datetime | None = strawberry.field(
        description="When a technician or an answer is expected, when promised."
    )
    created_at: dt.datetime = strawberry.field(description="When it was opened.")
    updated_at: dt.datetime = strawberry.field(description="When it last changed.")
    # Made into TicketEvents only when asked for (a list of open tickets rarely asks).
    changes: strawberry.Private[Sequence[TicketEventRecord]]

    @strawberry.field(description="Its changes, oldest first.")
    def history(self) -> list[TicketEvent]:
        return [
            TicketEvent(at=h.at, status=TicketStatus.of(h.status), note=h.note)
            for h in self.changes
        ]

    @classmethod
    def from_record(cls, record: TicketRecord) -> Ticket:
        return cls(
            id=strawberry.ID(record.id),
            subject=record.subject,
            status=TicketStatus.of(record.status),
            priority=TicketPriority.of(record.priority),
            channel=Channel.of(record.channel),
            assignee=record.assignee,
            eta=record.eta,
            created_at=record.created_at,
            updated_at=record.updated_at,
            changes=record.history,
        )
