"""Types backed by the engagement store: profile, timeline and tickets."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import strawberry

from domain import vocabulary
from resolvers.access import MarketingData, Pii
from resolvers.common import Money, PageInfo, edge_cursor
from resolvers.enums import Channel, IdentityType, InteractionType, TicketPriority, TicketStatus
from resolvers.masking import mask_identifier
from sources.mongo.records import (
    InteractionRecord,
    ProfileRecord,
    TicketEventRecord,
    TicketRecord,
)
from sources.paging import Page, PageKey, Position


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
    """Each field is worked out from the record when it is asked for: a batch of a hundred
    profiles asked only their segments built every consent, identity and trait of each."""

    record: strawberry.Private[ProfileRecord]

    @property
    def marketing_allowed(self) -> bool:
        """Whether marketing is allowed (`MarketingData`): withdrawn means no marketing
        channel is granted any more."""
        return any(c.granted for c in self.record.consents if c.channel in MARKETING_CHANNELS)

    @strawberry.field(
        description="Free-form traits, by name; empty while marketing consent is withdrawn.",
        extensions=[MarketingData()],
    )
    def traits(self) -> list[KeyValue]:
        return [KeyValue(key=k, value=v) for k, v in sorted(self.record.traits.items())]

    @strawberry.field(
        description="Marketing and service segments; only service segments while marketing "
        "consent is withdrawn.",
        extensions=[MarketingData()],
    )
    def segments(self) -> list[str]:
        return self.record.segments

    @strawberry.field(description="Contact preferences.")
    def preferences(self) -> Preferences:
        return Preferences(
            channels=[Channel.of(c) for c in self.record.preferred_channels],
            language=self.record.language,
        )

    @strawberry.field(description="Consent per channel.")
    def consents(self) -> list[Consent]:
        return [
            Consent(channel=Channel.of(c.channel), granted=c.granted, updated_at=c.updated_at)
            for c in self.record.consents
        ]

    @strawberry.field(description="Known identifiers elsewhere.")
    def identities(self) -> list[Identity]:
        customer_id = self.record.customer_id
        return [
            Identity(customer_id=customer_id, type=IdentityType.of(i.type), value=i.value)
            for i in self.record.identities
        ]

    @strawberry.field(description="Computed lifetime value.")
    def lifetime_value(self) -> Money:
        return Money.from_minor(self.record.lifetime_value_minor, self.record.currency)

    @strawberry.field(description="When the customer was last seen on any channel.")
    def last_seen_at(self) -> dt.datetime | None:
        return self.record.last_seen_at

    def without_marketing(self, field_name: str, value: list[object]) -> list[object]:
        """What a field shows while marketing consent is withdrawn."""
        return [s for s in value if s in SERVICE_SEGMENTS] if field_name == "segments" else []

    @classmethod
    def from_record(cls, record: ProfileRecord) -> Profile:
        _check_names(record)
        return cls(record=record)


def _check_names(record: ProfileRecord) -> None:
    """Raise the ValueError of the first stored value the graph has no name for: such a
    document is a bug, reported at `profile` whichever of its fields were asked for, as when
    every field was converted up front (`Stored.check`, called only for such a value: a
    profile holds a dozen of them)."""
    for channel in record.preferred_channels:
        if channel not in _CHANNELS:
            Channel.check(channel)
    for consent in record.consents:
        if consent.channel not in _CHANNELS:
            Channel.check(consent.channel)
    for identity in record.identities:
        if identity.type not in _IDENTITY_TYPES:
            IdentityType.check(identity.type)


_CHANNELS = frozenset(member.value for member in Channel)
_IDENTITY_TYPES = frozenset(member.value for member in IdentityType)


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
    position: strawberry.Private[Position]
    cursor: str = strawberry.field(resolver=edge_cursor, description="Opaque cursor of this entry.")
    node: Interaction = strawberry.field(description="The interaction.")


@strawberry.type(description="A page of the timeline, newest first.")
class InteractionConnection:
    edges: list[InteractionEdge] = strawberry.field(description="The entries of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page sits.")

    @classmethod
    def from_page(cls, page: Page[InteractionRecord], key: PageKey) -> InteractionConnection:
        return cls(
            edges=[
                InteractionEdge(position=p, node=Interaction.from_record(r))
                for p, r in zip(page.positions, page.items, strict=True)
            ],
            page_info=PageInfo.of(page, key),
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
