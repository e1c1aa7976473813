"""The customer: contact data and addresses (SQL), and every other source hung beneath it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Sequence
from typing import Annotated, Any

import strawberry
from bson import ObjectId
from graphql import GraphQLError

from domain.customers import normalise_email
from domain.principal import Scope
from resolvers.access import Pii, check_entity, check_readable, readable
from resolvers.common import (
    Info,
    UserInputError,
    is_record_id,
    load,
    load_each,
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
        AddressKind.check(record.kind)
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
    async def resolve_references(
        cls, info: Info, representations: list[dict[str, Any]]
    ) -> list[Customer | Exception | None]:
        """The customers of federation representations, `{id}` or `{email}`, in order, each
        with the rules of `Query.customer`, and a refusal or a failed lookup in its own place:
        one batch per loader for all of them, as a gateway's hundred representations need."""
        found: list[Customer | Exception | None] = [None] * len(representations)
        ids: dict[int, int] = {}  # by index: the id asked, or the email
        emails: dict[int, str] = {}
        for index, representation in enumerate(representations):
            id, email = representation.get("id"), representation.get("email")
            try:
                if id is not None:
                    check_entity(info, Scope.CUSTOMERS, id)
                    number = parse_id(id)
                    if number is not None:
                        ids[index] = number
                elif email is not None:
                    check_readable(info, Scope.CUSTOMERS)
                    emails[index] = normalise_email(email)
                else:  # `Subgraph` lets no such representation through
                    raise UserInputError("A Customer representation needs its `id` or `email`.")
            except GraphQLError as error:
                found[index] = error
        records = await _records_by_index(info, ids, emails)
        customers = await survivors(info, list(records.values()))
        for index, customer in zip(records, customers, strict=True):
            try:
                if index in emails and not isinstance(customer, Exception):
                    # A customer principal learns nothing of an email not its own, held or not.
                    check_entity(info, Scope.CUSTOMERS, customer.customer_id if customer else None)
            except GraphQLError as error:
                found[index] = error
            else:
                found[index] = customer
        return found

    @classmethod
    def from_record(cls, record: CustomerRecord) -> Customer:
        CustomerStatus.check(record.status)
        return cls(record=record, customer_id=record.id)


async def _records_by_index(
    info: Info, ids: dict[int, int], emails: dict[int, str]
) -> dict[int, CustomerRecord | Exception | None]:
    """The records of the ids and emails asked, by index, a failed lookup in its place: each
    kind in one loader batch, the two side by side when both are asked."""
    loaders = info.context.loaders.sql
    asked: list[dict[int, Any]] = []
    lookups: list[Awaitable[list[CustomerRecord | Exception | None]]] = []
    if ids:
        asked.append(ids)
        lookups.append(load_each(info, loaders.customer_by_id, list(ids.values())))
    if emails:
        asked.append(emails)
        lookups.append(load_each(info, loaders.customer_by_email, list(emails.values())))
    if len(lookups) > 1:
        loaded = await asyncio.gather(*lookups)
    else:  # one kind, as a gateway sends: no task
        loaded = [await lookup for lookup in lookups]
    records: dict[int, CustomerRecord | Exception | None] = {}
    for keys, values in zip(asked, loaded, strict=True):
        records.update(zip(keys, values, strict=True))
    return records


async def survivors(
    info: Info, records: Sequence[CustomerRecord | Exception | None]
) -> list[Customer | Exception | None]:
    """The customer each record stands for (`surviving_customer`), a failure in its place;
    merged records, rare, follow their merges side by side, and the others take no
    coroutine."""
    customers: list[Customer | Exception | None] = []
    merged: list[int] = []
    for index, record in enumerate(records):
        if record is None or isinstance(record, Exception):
            customers.append(record)
        elif record.merged_into is None:
            customers.append(Customer.from_record(record))
        else:
            customers.append(None)
            merged.append(index)
    if merged:
        found = await asyncio.gather(
            *(surviving_customer(info, records[i]) for i in merged),  # type: ignore[arg-type]
            return_exceptions=True,
        )
        for index, survivor in zip(merged, found, strict=True):
            if isinstance(survivor, BaseException) and not isinstance(survivor, Exception):
                raise survivor  # cancelled
            customers[index] = survivor
    return customers


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
