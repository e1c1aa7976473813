"""Mutations: each returns its own `XSuccess | XError` union with a code enum.

Every change goes through the write model (`domain`), which writes it with its event in one
transaction and invalidates the cache before the mutation answers: a read after a mutation
sees it, and subscribers hear of it.

Over 400 lines: the Mutation type is one Strawberry class whose fields, their inputs and their
`XSuccess | XError` unions are declared side by side; each mutation is a few lines handing over
to `domain`."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any

import strawberry
from bson import ObjectId

import domain
from resolvers.access import changeable
from resolvers.common import Info, load, refused, target_id
from resolvers.customer import Customer
from resolvers.enums import (
    AddressKind,
    Channel,
    InteractionType,
    OrderStatus,
    TicketPriority,
    TicketStatus,
)
from resolvers.merge import MergeMutations
from resolvers.order import Order
from sources.sql.records import CustomerRecord


@strawberry.enum(description="Why a contact change was refused.")
class UpdateCustomerContactErrorCode(Enum):
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    CUSTOMER_MERGED = "CUSTOMER_MERGED"
    INVALID_EMAIL = "INVALID_EMAIL"
    INVALID_PHONE = "INVALID_PHONE"
    INVALID_NAME = "INVALID_NAME"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    NOTHING_TO_CHANGE = "NOTHING_TO_CHANGE"


@strawberry.input(description="New contact details; give only what changes.")
class UpdateCustomerContactInput:
    customer_id: strawberry.ID = strawberry.field(description="The customer to change.")
    email: str | None = strawberry.field(default=None, description="New email address.")
    phone: str | None = strawberry.field(
        default=None, description="New phone number, E.164 (spaces and dashes are ignored)."
    )
    first_name: str | None = strawberry.field(default=None, description="New given name.")
    last_name: str | None = strawberry.field(default=None, description="New family name.")


@strawberry.type(description="The contact details were changed.")
class UpdateCustomerContactSuccess:
    customer: Customer = strawberry.field(description="The customer as changed.")
    event_id: strawberry.ID = strawberry.field(description="Id of the change event.")


@strawberry.type(description="The contact details were not changed.")
class UpdateCustomerContactError:
    code: UpdateCustomerContactErrorCode = strawberry.field(description="Why.")
    message: str = strawberry.field(description="What to fix, in words.")
    field: str | None = strawberry.field(description="The input field at fault, if one is.")


UpdateCustomerContactResult = Annotated[
    UpdateCustomerContactSuccess | UpdateCustomerContactError,
    strawberry.union("UpdateCustomerContactResult", description="Changed, or why not."),
]


@strawberry.enum(description="Why an order status change was refused.")
class UpdateOrderStatusErrorCode(Enum):
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"


@strawberry.input(description="An order's next status.")
class UpdateOrderStatusInput:
    order_id: strawberry.ID = strawberry.field(description="The order to change.")
    status: OrderStatus = strawberry.field(
        description="The new status; only legal transitions are accepted (e.g. PAID to "
        "FULFILLING, SHIPPED to DELIVERED)."
    )
    tracking_number: str | None = strawberry.field(
        default=None, description="The carrier's tracking number, when shipping."
    )


@strawberry.type(description="The order moved to its new status.")
class UpdateOrderStatusSuccess:
    order: Order = strawberry.field(description="The order as changed.")
    event_id: strawberry.ID = strawberry.field(description="Id of the change event.")


@strawberry.type(description="The order's status was not changed.")
class UpdateOrderStatusError:
    code: UpdateOrderStatusErrorCode = strawberry.field(description="Why.")
    message: str = strawberry.field(description="What to fix, in words.")
    field: str | None = strawberry.field(description="The input field at fault, if one is.")


UpdateOrderStatusResult = Annotated[
    UpdateOrderStatusSuccess | UpdateOrderStatusError,
    strawberry.union("UpdateOrderStatusResult", description="Changed, or why not."),
]


@strawberry.enum(description="Why a consent change was refused.")
class SetConsentErrorCode(Enum):
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    CUSTOMER_MERGED = "CUSTOMER_MERGED"
    INVALID_CHANNEL = "INVALID_CHANNEL"


@strawberry.input(description="Grant or withdraw consent for one channel.")
class SetConsentInput:
    customer_id: strawberry.ID = strawberry.field(description="The customer.")
    channel: Channel = strawberry.field(description="EMAIL, SMS, PHONE, PUSH or POST.")
    granted: bool = strawberry.field(description="True to grant, false to withdraw.")


@strawberry.type(description="The consent was recorded.")
class SetConsentSuccess:
    customer: Customer = strawberry.field(description="The customer, with the new consent.")
    event_id: strawberry.ID = strawberry.field(description="Id of the change event.")


@strawberry.type(description="The consent was not recorded.")
class SetConsentError:
    code: SetConsentErrorCode = strawberry.field(description="Why.")
    message: str = strawberry.field(description="What to fix, in words.")
    field: str | None = strawberry.field(description="The input field at fault, if one is.")


SetConsentResult = Annotated[
    SetConsentSuccess | SetConsentError,
    strawberry.union("SetConsentResult", description="Recorded, or why not."),
]


def _input_customer(arguments: dict[str, Any]) -> object:
    return arguments["input"].customer_id


async def _customer_before(info: Info, customer_id: int) -> CustomerRecord | None:
    """The customer, read before a change that leaves its own record as it is (an address, a
    consent): the answer is built from it, so no read after the commit can turn a change
    that was made into a failure. A store that fails here fails the mutation before it
    changes anything."""
    return await load(info, info.context.loaders.sql.customer_by_id, customer_id)


async def _customer_after(info: Info, before: CustomerRecord | None, customer_id: int) -> Customer:
    if before is None:  # it did not exist when read, yet the change found it
        before = await load(info, info.context.loaders.sql.customer_by_id, customer_id)
        assert before is not None
    return Customer.from_record(before)


@strawberry.type(description="Changes to contact data, orders and consent.")
class ContactMutations:
    @strawberry.mutation(
        description="Change a customer's email, phone or name (agents, admins, and a customer "
        "its own).",
        extensions=[changeable(_input_customer)],
    )
    async def update_customer_contact(
        self,
        info: Info,
        input: Annotated[
            UpdateCustomerContactInput, strawberry.argument(description="What to change.")
        ],
    ) -> UpdateCustomerContactResult | None:
        try:
            record, event = await domain.change_contact(
                info.context.changes,
                customer_id=target_id(input.customer_id),
                email=input.email,
                phone=input.phone,
                first_name=input.first_name,
                last_name=input.last_name,
            )
        except domain.ChangeRejectedError as error:
            return refused(UpdateCustomerContactError, UpdateCustomerContactErrorCode, error)
        return UpdateCustomerContactSuccess(
            customer=Customer.from_record(record), event_id=strawberry.ID(event.id)
        )

    @strawberry.mutation(description="Move an order to its next status.", extensions=[changeable()])
    async def update_order_status(
        self,
        info: Info,
        input: Annotated[UpdateOrderStatusInput, strawberry.argument(description="The change.")],
    ) -> UpdateOrderStatusResult | None:
        try:
            record, event = await domain.change_order_status(
                info.context.changes,
                order_id=target_id(input.order_id),
                status=input.status.value,
                tracking_number=input.tracking_number,
            )
        except domain.ChangeRejectedError as error:
            return refused(UpdateOrderStatusError, UpdateOrderStatusErrorCode, error)
        return UpdateOrderStatusSuccess(
            order=Order.from_record(record), event_id=strawberry.ID(event.id)
        )

    @strawberry.mutation(
        description="Grant or withdraw a customer's consent for a channel (agents, admins, and "
        "a customer its own).",
        extensions=[changeable(_input_customer)],
    )
    async def set_consent(
        self,
        info: Info,
        input: Annotated[SetConsentInput, strawberry.argument(description="The consent.")],
    ) -> SetConsentResult | None:
        customer_id = target_id(input.customer_id)
        before = await _customer_before(info, customer_id)
        try:
            event = await domain.change_consent(
                info.context.changes,
                customer_id=customer_id,
                channel=input.channel.value,
                granted=input.granted,
            )
        except domain.ChangeRejectedError as error:
            return refused(SetConsentError, SetConsentErrorCode, error)
        return SetConsentSuccess(
            customer=await _customer_after(info, before, customer_id),
            event_id=strawberry.ID(event.id),
        )


@strawberry.enum(description="Why an address change was refused.")
class AddressErrorCode(Enum):
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    CUSTOMER_MERGED = "CUSTOMER_MERGED"
    INVALID_ADDRESS = "INVALID_ADDRESS"
    ADDRESS_NOT_FOUND = "ADDRESS_NOT_FOUND"


@strawberry.input(description="A postal address; one per kind, so setting a kind replaces it.")
class SetAddressInput:
    customer_id: strawberry.ID = strawberry.field(description="The customer.")
    kind: AddressKind = strawberry.field(description="HOME, BILLING or SHIPPING.")
    line1: str = strawberry.field(description="First street line.")
    line2: str | None = strawberry.field(default=None, description="Second street line.")
    city: str = strawberry.field(description="City or town.")
    region: str | None = strawberry.field(default=None, description="State, county, province.")
    postal_code: str = strawberry.field(description="Postal code.")
    country: str = strawberry.field(description="ISO 3166-1 alpha-2 code, e.g. GB.")


@strawberry.type(description="The address was set or removed.")
class AddressSuccess:
    customer: Customer = strawberry.field(description="The customer, with its addresses now.")
    event_id: strawberry.ID = strawberry.field(description="Id of the change event.")


@strawberry.type(description="The addresses were not changed.")
class AddressError:
    code: AddressErrorCode = strawberry.field(description="Why.")
    message: str = strawberry.field(description="What to fix, in words.")
    field: str | None = strawberry.field(description="The input field at fault, if one is.")


AddressResult = Annotated[
    AddressSuccess | AddressError,
    strawberry.union("AddressResult", description="Changed, or why not."),
]


@strawberry.enum(description="Why an interaction was not recorded.")
class RecordInteractionErrorCode(Enum):
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    CUSTOMER_MERGED = "CUSTOMER_MERGED"


@strawberry.input(description="A name and a value.")
class KeyValueInput:
    key: str = strawberry.field(description="The name.")
    value: str = strawberry.field(description="The value.")


@strawberry.input(description="Something the customer did, for the timeline.")
class RecordInteractionInput:
    customer_id: strawberry.ID = strawberry.field(description="The customer.")
    type: InteractionType = strawberry.field(description="What happened.")
    channel: Channel = strawberry.field(description="Where it happened.")
    occurred_at: dt.datetime | None = strawberry.field(
        default=None, description="When it happened (default: now)."
    )
    attributes: list[KeyValueInput] = strawberry.field(
        default_factory=list, description="Details, by name."
    )


@strawberry.type(description="The interaction is on the timeline.")
class RecordInteractionSuccess:
    event_id: strawberry.ID = strawberry.field(description="Id of the change event.")


@strawberry.type(description="The interaction was not recorded.")
class RecordInteractionError:
    code: RecordInteractionErrorCode = strawberry.field(description="Why.")
    message: str = strawberry.field(description="What to fix, in words.")
    field: str | None = strawberry.field(description="The input field at fault, if one is.")


RecordInteractionResult = Annotated[
    RecordInteractionSuccess | RecordInteractionError,
    strawberry.union("RecordInteractionResult", description="Recorded, or why not."),
]


@strawberry.enum(description="Why a ticket change was refused.")
class TicketErrorCode(Enum):
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    CUSTOMER_MERGED = "CUSTOMER_MERGED"
    TICKET_NOT_FOUND = "TICKET_NOT_FOUND"
    INVALID_SUBJECT = "INVALID_SUBJECT"


@strawberry.input(description="A new support ticket.")
class OpenTicketInput:
    customer_id: strawberry.ID = strawberry.field(description="The customer.")
    subject: str = strawberry.field(description="What it is about.")
    priority: TicketPriority = strawberry.field(
        default=TicketPriority.NORMAL, description="How urgent it is."
    )
    channel: Channel = strawberry.field(default=Channel.PHONE, description="Where it came in.")


@strawberry.input(description="A ticket's next status.")
class ChangeTicketStatusInput:
    ticket_id: strawberry.ID = strawberry.field(description="The ticket.")
    status: TicketStatus = strawberry.field(description="Its new status.")
    assignee: str | None = strawberry.field(default=None, description="Who handles it now.")
    eta: dt.datetime | None = strawberry.field(
        default=None, description="When a technician or an answer is expected."
    )
    note: str | None = strawberry.field(default=None, description="What the handler writes.")


@strawberry.type(description="The ticket was opened or changed.")
class TicketSuccess:
    ticket_id: strawberry.ID = strawberry.field(description="The ticket's id.")
    event_id: strawberry.ID = strawberry.field(description="Id of the change event.")


@strawberry.type(description="The ticket was not opened or changed.")
class TicketError:
    code: TicketErrorCode = strawberry.field(description="Why.")
    message: str = strawberry.field(description="What to fix, in words.")
    field: str | None = strawberry.field(description="The input field at fault, if one is.")


TicketResult = Annotated[
    TicketSuccess | TicketError,
    strawberry.union("TicketResult", description="Done, or why not."),
]


@strawberry.type(description="Every change c360 can be asked to make.")
class Mutation(ContactMutations, MergeMutations):
    @strawberry.mutation(
        description="Add the customer's address of a kind, or replace it.",
        extensions=[changeable()],
    )
    async def set_address(
        self,
        info: Info,
        input: Annotated[SetAddressInput, strawberry.argument(description="The address.")],
    ) -> AddressResult | None:
        customer_id = target_id(input.customer_id)
        before = await _customer_before(info, customer_id)
        try:
            event = await domain.change_address(
                info.context.changes,
                customer_id=customer_id,
                address={
                    "kind": input.kind.value,
                    "line1": input.line1,
                    "line2": input.line2,
                    "city": input.city,
                    "region": input.region,
                    "postal_code": input.postal_code,
                    "country": input.country.upper(),
                },
            )
        except domain.ChangeRejectedError as error:
            return refused(AddressError, AddressErrorCode, error)
        return AddressSuccess(
            customer=await _customer_after(info, before, customer_id),
            event_id=strawberry.ID(event.id),
        )

    @strawberry.mutation(
        description="Remove the customer's address of a kind.", extensions=[changeable()]
    )
    async def remove_address(
        self,
        info: Info,
        customer_id: Annotated[strawberry.ID, strawberry.argument(description="The customer.")],
        kind: Annotated[AddressKind, strawberry.argument(description="Which address.")],
    ) -> AddressResult | None:
        number = target_id(customer_id)
        before = await _customer_before(info, number)
        try:
            event = await domain.remove_address(
                info.context.changes, customer_id=number, kind=kind.value
            )
        except domain.ChangeRejectedError as error:
            return refused(AddressError, AddressErrorCode, error)
        return AddressSuccess(
            customer=await _customer_after(info, before, number), event_id=strawberry.ID(event.id)
        )

    @strawberry.mutation(
        description="Add an interaction to the customer's timeline.", extensions=[changeable()]
    )
    async def record_interaction(
        self,
        info: Info,
        input: Annotated[
            RecordInteractionInput, strawberry.argument(description="The interaction.")
        ],
    ) -> RecordInteractionResult | None:
        customer_id = target_id(input.customer_id)
        try:
            event = await domain.record_interaction(
                info.context.changes,
                customer_id=customer_id,
                interaction={
                    "_id": ObjectId(),
                    "customer_id": customer_id,
                    "type": input.type.value,
                    "channel": input.channel.value,
                    "occurred_at": input.occurred_at or dt.datetime.now(dt.UTC),
                    "attributes": {a.key: a.value for a in input.attributes},
                },
            )
        except domain.ChangeRejectedError as error:
            return refused(RecordInteractionError, RecordInteractionErrorCode, error)
        return RecordInteractionSuccess(event_id=strawberry.ID(event.id))

    @strawberry.mutation(
        description="Open a support ticket for a customer.", extensions=[changeable()]
    )
    async def open_ticket(
        self,
        info: Info,
        input: Annotated[OpenTicketInput, strawberry.argument(description="The ticket.")],
    ) -> TicketResult | None:
        try:
            ticket_id, event = await domain.open_ticket(
                info.context.changes,
                customer_id=target_id(input.customer_id),
                subject=input.subject,
                priority=input.priority.value,
                channel=input.channel.value,
            )
        except domain.ChangeRejectedError as error:
            return refused(TicketError, TicketErrorCode, error)
        return TicketSuccess(ticket_id=strawberry.ID(ticket_id), event_id=strawberry.ID(event.id))

    @strawberry.mutation(
        description="Move a ticket to a new status (assign it, resolve it).",
        extensions=[changeable()],
    )
    async def change_ticket_status(
        self,
        info: Info,
        input: Annotated[ChangeTicketStatusInput, strawberry.argument(description="The change.")],
    ) -> TicketResult | None:
        try:
            event = await domain.change_ticket_status(
                info.context.changes,
                customer_id=None,
                ticket_id=str(input.ticket_id),
                status=input.status.value,
                assignee=input.assignee,
                eta=input.eta,
                note=input.note,
            )
        except domain.ChangeRejectedError as error:
            return refused(TicketError, TicketErrorCode, error)
        return TicketSuccess(ticket_id=input.ticket_id, event_id=strawberry.ID(event.id))
