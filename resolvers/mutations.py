"""Mutations: each returns its own `XSuccess | XError` union with a code enum.

Every change goes through `sources.events.changes`, which writes it with its event in one
transaction and invalidates the cache before the mutation answers: a read after a mutation
sees it, and subscribers hear of it.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import strawberry

from resolvers.common import Info, parse_id
from resolvers.customer import Customer
from resolvers.enums import Channel, OrderStatus
from resolvers.order import Order
from sources.events import changes


@strawberry.enum(description="Why a contact change was refused.")
class UpdateCustomerContactErrorCode(Enum):
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
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


def _customer_id(value: strawberry.ID) -> int:
    number = parse_id(value)
    # An id that cannot exist is reported like one that does not.
    return number if number is not None else 0


async def _customer(info: Info, customer_id: int) -> Customer:
    record = await info.context.loaders.sql.customer_by_id.load(customer_id)
    assert record is not None
    return Customer.from_record(record)


@strawberry.type(description="Every change c360 can be asked to make.")
class Mutation:
    @strawberry.mutation(description="Change a customer's email, phone or name.")
    async def update_customer_contact(
        self,
        info: Info,
        input: Annotated[
            UpdateCustomerContactInput, strawberry.argument(description="What to change.")
        ],
    ) -> UpdateCustomerContactResult:
        try:
            record, event = await changes.change_contact(
                info.context.connections.changes,
                customer_id=_customer_id(input.customer_id),
                email=input.email,
                phone=input.phone,
                first_name=input.first_name,
                last_name=input.last_name,
            )
        except changes.ChangeRejectedError as error:
            return UpdateCustomerContactError(
                code=UpdateCustomerContactErrorCode(error.code),
                message=str(error),
                field=error.field,
            )
        return UpdateCustomerContactSuccess(
            customer=Customer.from_record(record), event_id=strawberry.ID(event.id)
        )

    @strawberry.mutation(description="Move an order to its next status.")
    async def update_order_status(
        self,
        info: Info,
        input: Annotated[UpdateOrderStatusInput, strawberry.argument(description="The change.")],
    ) -> UpdateOrderStatusResult:
        try:
            record, event = await changes.change_order_status(
                info.context.connections.changes,
                order_id=_customer_id(input.order_id),
                status=input.status.value,
                tracking_number=input.tracking_number,
            )
        except changes.ChangeRejectedError as error:
            return UpdateOrderStatusError(
                code=UpdateOrderStatusErrorCode(error.code), message=str(error), field=error.field
            )
        return UpdateOrderStatusSuccess(
            order=Order.from_record(record), event_id=strawberry.ID(event.id)
        )

    @strawberry.mutation(description="Grant or withdraw a customer's consent for a channel.")
    async def set_consent(
        self,
        info: Info,
        input: Annotated[SetConsentInput, strawberry.argument(description="The consent.")],
    ) -> SetConsentResult:
        customer_id = _customer_id(input.customer_id)
        try:
            event = await changes.change_consent(
                info.context.connections.changes,
                customer_id=customer_id,
                channel=input.channel.value,
                granted=input.granted,
            )
        except changes.ChangeRejectedError as error:
            return SetConsentError(
                code=SetConsentErrorCode(error.code), message=str(error), field=error.field
            )
        return SetConsentSuccess(
            customer=await _customer(info, customer_id), event_id=strawberry.ID(event.id)
        )
