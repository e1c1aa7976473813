"""The customer: contact data and addresses (SQL), and every other source hung beneath it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry
from bson import ObjectId

from domain.customers import normalise_email
from domain.principal import Scope
from resolvers.access import Pii, check_entity, check_readable, readable
from resolvers.common import (
    Info,
    UserInputError,
    is_record_id,
    load,
    loaded,
    page_key,
    parse_id,
)
from resolvers.engagement import InteractionConnection, Profile, Ticket
from resolvers.enums import AddressKind, CustomerStatus, InteractionType, OrderStatus, TicketStatus
from resolvers.masking import mask_email, mask_phone, mask_street, withhold
from resolvers.order import OrderConnection
from resolvers.vendor import LoyaltyMembership
from sources.mongo.records import ProfileRecord
from sources.sql.records import AddressRecord, CustomerRecord
from sources.thirdparty.loyalty import LoyaltyRecord

FirstArg = Annotated[
    int | None,
    strawberry.argument(description="Page size: default 20, at most 100 (C360_PAGE_MAX)."),
]
AfterArg = Annotated[
    str | None,
    strawberry.argument(description="Return items after this cursor (a previous `endCursor`)."),
]


@strawberry.type(description="A postal address of the customer.")
class Address:
    # Record-backed, as `Customer` is.
    record: strawberry.Private[AddressRecord]
    customer_id: strawberry.Private[int]  # the `Pii` rules' owner

    @strawberry.field(description="What the address is used for.")
    def kind(self) -> AddressKind:
        return AddressKind.of(self.record.kind)

    @strawberry.field(
        description="First street line (personal data: masked for analysts).",
        extensions=[Pii(mask_street)],
    )
    def line1(self) -> str | None:
        return self.record.line1

    @strawberry.field(
        description="Second street line (personal data: masked for analysts).",
        extensions=[Pii(mask_street)],
    )
    def line2(self) -> str | None:
        return self.record.line2

    @strawberry.field(description="City or town.")
    def city(self) -> str:
        return self.record.city

    @strawberry.field(description="State, county or province.")
    def region(self) -> str | None:
        return self.record.region

    @strawberry.field(description="Postal code.")
    def postal_code(self) -> str:
        return self.record.postal_code

    @strawberry.field(description="ISO 3166-1 alpha-2 country code.")
    def country(self) -> str:
        return self.record.country

    @strawberry.field(description="When the address last changed.")
    def updated_at(self) -> dt.datetime:
        return self.record.updated_at

    @classmethod
    def from_record(cls, record: AddressRecord) -> Address:
        return cls(record=record, customer_id=record.customer_id)


@strawberry.federation.type(
    description="A customer: who they are (SQL system of record) and everything known about "
    "them from the engagement store and third-party APIs. Fields backed by a source other than "
    "SQL are nullable: when that source fails, they are null and an error names the path.",
    keys=["id", "email"],
)
class Customer:
    """Record-backed: each field is read from the record when it is asked for, so a batch of
    a hundred customers asked for their names converts nothing else."""

    record: strawberry.Private[CustomerRecord]
    customer_id: strawberry.Private[int]  # the `Pii` rules' owner

    @strawberry.field(description="Customer id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.record.id))

    @strawberry.field(description="Given name.")
    def first_name(self) -> str:
        return self.record.first_name

    @strawberry.field(description="Family name.")
    def last_name(self) -> str:
        return self.record.last_name

    @strawberry.field(
        description="Email address, normalised to lower case (personal data: masked for "
        "analysts, e.g. `j***@example.com`).",
        extensions=[Pii(mask_email)],
    )
    def email(self) -> str | None:
        return self.record.email

    @strawberry.field(
        description="Phone number in E.164 form (personal data: masked for analysts, e.g. "
        "`+44*******321`).",
        extensions=[Pii(mask_phone)],
    )
    def phone(self) -> str | None:
        return self.record.phone

    @strawberry.field(
        description="Date of birth, when known (personal data: null for analysts).",
        extensions=[Pii(withhold)],
    )
    def birth_date(self) -> dt.date | None:
        return self.record.birth_date

    @strawberry.field(description="ACTIVE, or MERGED into another.")
    def status(self) -> CustomerStatus:
        return CustomerStatus.of(self.record.status)

    @strawberry.field(description="When the record was created.")
    def created_at(self) -> dt.datetime:
        return self.record.created_at

    @strawberry.field(description="When the record last changed.")
    def updated_at(self) -> dt.datetime:
        return self.record.updated_at

    @strawberry.field(description="Full name: given name then family name.")
    def name(self) -> str:
        return f"{self.record.first_name} {self.record.last_name}"

    @strawberry.field(
        description="The customer this record was merged into (status MERGED); null for an "
        "active customer. Refused to a customer principal: the survivor is another record."
    )
    async def merged_into(self, info: Info) -> Customer | None:
        if self.record.merged_into is None:
            return None
        check_entity(info, Scope.CUSTOMERS, self.record.merged_into)
        record = await load(info, info.context.loaders.sql.customer_by_id, self.record.merged_into)
        return Customer.from_record(record) if record else None

    @loaded(
        lambda loaders: loaders.sql.addresses_by_customer_id,
        key=lambda customer: customer.record.id,
        description="Postal addresses, one per kind at most.",
        extensions=[readable(Scope.CUSTOMERS)],
        metadata={"list_size": 3},
    )
    def addresses(self, records: list[AddressRecord] | None) -> list[Address]:
        return [Address.from_record(r) for r in records or []]

    @strawberry.field(
        description="The customer's orders, newest first.", extensions=[readable(Scope.ORDERS)]
    )
    async def orders(
        self,
        info: Info,
        first: FirstArg = None,
        after: AfterArg = None,
        status: Annotated[
            OrderStatus | None, strawberry.argument(description="Only orders in this status.")
        ] = None,
    ) -> OrderConnection | None:
        filters = (status.value,) if status else ()
        key = page_key(info, self.record.id, first, after, filters=filters, valid_id=is_record_id)
        page = await load(info, info.context.loaders.sql.order_page_by_customer, key)
        assert page is not None
        return OrderConnection.from_page(page, key)

    @loaded(
        lambda loaders: loaders.mongo.profile_by_customer_id,
        key=lambda customer: customer.record.id,
        description="Engagement profile; null when the customer has none.",
        extensions=[readable(Scope.PROFILE)],
    )
    def profile(self, record: ProfileRecord | None) -> Profile | None:
        return Profile.from_record(record) if record else None

    @strawberry.field(
        description="Interaction timeline, newest first.", extensions=[readable(Scope.TIMELINE)]
    )
    async def timeline(
        self,
        info: Info,
        first: FirstArg = None,
        after: AfterArg = None,
        types: Annotated[
            list[InteractionType] | None,
            strawberry.argument(description="Only interactions of these types."),
        ] = None,
    ) -> InteractionConnection | None:
        filters = tuple(sorted(t.value for t in types or ()))
        key = page_key(
            info, self.record.id, first, after, filters=filters, valid_id=ObjectId.is_valid
        )
        page = await load(info, info.context.loaders.mongo.timeline_page_by_customer, key)
        return InteractionConnection.from_page(page, key) if page else None

    @strawberry.field(
        description="Support tickets, newest first.",
        extensions=[readable(Scope.TICKETS)],
        metadata={"list_size": 20},
    )
    async def tickets(
        self,
        info: Info,
        status: Annotated[
            TicketStatus | None, strawberry.argument(description="Only tickets in this status.")
        ] = None,
    ) -> list[Ticket] | None:
        key = (self.record.id, status.value if status else None)
        records = await load(info, info.context.loaders.mongo.tickets_by_customer, key)
        return [Ticket.from_record(r) for r in records] if records is not None else None

    @loaded(
        lambda loaders: loaders.vendor.loyalty_by_customer_id,
        key=lambda customer: customer.record.id,
        description="Loyalty membership; null when not a member.",
        extensions=[readable(Scope.LOYALTY)],
    )
    def loyalty(self, record: LoyaltyRecord | None) -> LoyaltyMembership | None:
        return LoyaltyMembership.from_record(record) if record else None

    @classmethod
    async def resolve_reference(
        cls, info: Info, id: strawberry.ID | None = None, email: str | None = None
    ) -> Customer | None:
        """The customer of a federation representation, `{id}` or `{email}`, with the rules of
        `Query.customer`. Through the loaders: the gateway's representations, resolved side
        by side, cost one batch per source together."""
        loaders = info.context.loaders.sql
        if id is not None:
            check_entity(info, Scope.CUSTOMERS, id)
            number = parse_id(id)
            record = await load(info, loaders.customer_by_id, number) if number else None
        elif email is not None:
            check_readable(info, Scope.CUSTOMERS)
            record = await load(info, loaders.customer_by_email, normalise_email(email))
        else:
            raise UserInputError("A Customer representation needs its `id` or its `email`.")
        customer = await surviving_customer(info, record)
        if id is None:
            # A customer principal learns nothing of an email not its own, held or not.
            check_entity(info, Scope.CUSTOMERS, customer.customer_id if customer else None)
        return customer

    @classmethod
    def from_record(cls, record: CustomerRecord) -> Customer:
        return cls(record=record, customer_id=record.id)


async def surviving_customer(info: Info, record: CustomerRecord | None) -> Customer | None:
    """The customer a record stands for: itself, or, for a merged record, the customer it was
    merged into (following a chain of merges). Every lookup lands on the survivor.

    Except a `customer` principal's: it reaches its own record, merged or not, and no other
    (a merge made in error, which is what unmerge is for, must not open another person's
    orders and timeline to it).
    """
    if info.context.principal.is_customer:
        return Customer.from_record(record) if record else None
    seen: set[int] = set()
    while record is not None and record.merged_into is not None and record.id not in seen:
        seen.add(record.id)
        record = await load(info, info.context.loaders.sql.customer_by_id, record.merged_into)
    return Customer.from_record(record) if record else None
