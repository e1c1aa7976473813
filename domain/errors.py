"""Why a change is refused: the errors every command of the write model raises."""

from __future__ import annotations

from sources.sql.records import CustomerRecord


class ChangeRejectedError(Exception):
    """A change that cannot be made as asked; `code` says why, `field` names the culprit."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class DuplicateEventError(Exception):
    """The event was applied before (its id is already in an outbox)."""


def no_such_customer(customer_id: int) -> ChangeRejectedError:
    return ChangeRejectedError(
        "CUSTOMER_NOT_FOUND", f"no customer has id {customer_id}", "customerId"
    )


def merged_customer(customer: CustomerRecord) -> ChangeRejectedError:
    # The survivor is not named: to a customer principal it is another person's record (staff
    # read it in `mergedInto`).
    return ChangeRejectedError(
        "CUSTOMER_MERGED",
        f"customer {customer.id} was merged into another customer: make the change on the "
        "survivor (its `mergedInto`)",
        "customerId",
    )


def not_the_subjects(entity: str, name: str, subject: int, field: str) -> ChangeRejectedError:
    # The owner goes unnamed: which customer holds the entity is not the publisher's to learn.
    return ChangeRejectedError(
        f"{entity.upper()}_OF_ANOTHER_CUSTOMER",
        f"{entity} {name} does not belong to customer {subject}, the event's subject",
        field,
    )
