"""Server-to-server lookups: many customers by id or by email in one request.

Each list is answered in key order, `null` where a key names no customer (or cannot name one),
duplicates allowed. Whatever the number of keys, each source is asked once per level: the keys
go to the loaders together, so 500 customers with their profiles and loyalty cost one SQL
statement, one MongoDB command and one loyalty batch request, by id or by email.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import strawberry

from domain.customers import normalise_email
from domain.principal import Scope
from resolvers.access import staff_lookup
from resolvers.common import Info, UserInputError, load_many, parse_id
from resolvers.customer import Customer, survivors


def _check_size(info: Info, name: str, keys: Sequence[object]) -> None:
    most = info.context.settings.batch_keys_max
    if len(keys) > most:
        raise UserInputError(
            f"`{name}` holds {len(keys)} keys; one lookup takes at most {most}: split the keys "
            "over several requests."
        )


def _raised(customers: list[Customer | Exception | None]) -> list[Customer | None]:
    """The customers, or the first failure among them raised: a list of customers fails
    whole (`customers` and `customersByEmails` are one answer, not one per key)."""
    answers: list[Customer | None] = []
    for customer in customers:
        if isinstance(customer, Exception):
            raise customer
        answers.append(customer)
    return answers


async def customers_by_ids(info: Info, numbers: Sequence[int | None]) -> list[Customer | None]:
    """Customers (survivors of merges) for parsed ids, in order; None for None or unknown."""
    wanted = sorted({n for n in numbers if n is not None})
    records = await load_many(info, info.context.loaders.sql.customer_by_id, wanted)
    found = dict(zip(wanted, records, strict=True))
    return _raised(
        await survivors(info, [found.get(n) if n is not None else None for n in numbers])
    )


async def customers_by_emails(info: Info, emails: Sequence[str]) -> list[Customer | None]:
    """Customers (survivors of merges) holding each email, in order; None where none does."""
    normalised = [normalise_email(e) for e in emails]
    wanted = sorted({e for e in normalised if e})
    records = await load_many(info, info.context.loaders.sql.customer_by_email, wanted)
    found = dict(zip(wanted, records, strict=True))
    return _raised(await survivors(info, [found.get(e) for e in normalised]))


@strawberry.type
class BatchQuery:
    @strawberry.field(
        description="Many customers by id, for services (staff and service keys with "
        "`customers:read`; not the customer role): one entry per id, in the order given, null "
        "for an id that names no customer; duplicates allowed. At most 500 ids by default "
        "(C360_BATCH_KEYS_MAX). The id of a merged customer gives the surviving customer. "
        "Each source is asked once whatever the number of ids.",
        extensions=[staff_lookup(Scope.CUSTOMERS)],
        metadata={"list_size_arg": "ids"},
    )
    async def customers(
        self,
        info: Info,
        ids: Annotated[
            list[strawberry.ID],
            strawberry.argument(description="Customer ids, at most 500."),
        ],
    ) -> list[Customer | None] | None:
        _check_size(info, "ids", ids)
        return await customers_by_ids(info, [parse_id(i) for i in ids])

    @strawberry.field(
        description="Many customers by email, for services (staff and service keys with "
        "`customers:read`; not the customer role): one entry per email, in the order given, "
        "null for an email no customer holds; emails match ignoring case and surrounding "
        "spaces; duplicates allowed. At most 500 emails by default (C360_BATCH_KEYS_MAX). An "
        "email of a merged customer gives the surviving customer.",
        extensions=[staff_lookup(Scope.CUSTOMERS)],
        metadata={"list_size_arg": "emails"},
    )
    async def customers_by_emails(
        self,
        info: Info,
        emails: Annotated[
            list[str],
            strawberry.argument(description="Email addresses, at most 500."),
        ],
    ) -> list[Customer | None] | None:
        _check_size(info, "emails", emails)
        return await customers_by_emails(info, emails)
