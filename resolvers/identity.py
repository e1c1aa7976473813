"""Finding customers: identity lookup (email, phone, external id) and agents' search."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Annotated

import phonenumbers
import strawberry

from domain.customers import normalise_email
from domain.principal import Scope
from resolvers.access import forbidden, reads_pii_in_clear, staff_lookup
from resolvers.common import Info, PageInfo, UserInputError, load, page_size
from resolvers.customer import Customer, surviving_customer
from resolvers.enums import IdentityType
from sources.paging import CursorError
from sources.sql.queries import Contact
from sources.sql.records import CustomerRecord
from sources.sql.search import (
    MAX_WORDS,
    SearchKey,
    decode_search_cursor,
    encode_search_cursor,
    names_only,
    query_terms,
)

# Fewest characters a search query may have: one letter would match a fraction of everyone.
SEARCH_MIN_CHARS = 2
SEARCH_MAX_CHARS = 200


@strawberry.enum(description="What a lookup argument matched a customer on.")
class LookupField(Enum):
    EMAIL = strawberry.enum_value("EMAIL", description="The `email` argument.")
    PHONE = strawberry.enum_value("PHONE", description="The `phone` argument.")
    EXTERNAL_ID = strawberry.enum_value("EXTERNAL_ID", description="The `externalId` argument.")


@strawberry.input(description="An identifier that names the customer in another system.")
class ExternalIdInput:
    type: IdentityType = strawberry.field(description="What kind of identifier this is.")
    value: str = strawberry.field(
        description="The identifier, exactly as the other system gives it (e.g. `LOY00000042`)."
    )


@strawberry.type(description="A customer a lookup found, and what it matched on.")
class CustomerMatch:
    customer: Customer = strawberry.field(
        description="The customer (the survivor, when the record matched was merged)."
    )
    matched_on: list[LookupField] = strawberry.field(
        description="The lookup arguments that led to this customer, in argument order."
    )


@strawberry.type(
    description="The result of a lookup: one customer, or, when the arguments lead to more "
    "than one, every candidate with what it matched, for a person to choose (never a silent "
    "pick)."
)
class CustomerLookup:
    customer: Customer | None = strawberry.field(
        description="The customer, when exactly one matched; null when the match is ambiguous."
    )
    ambiguous: bool = strawberry.field(
        description="Whether more than one customer matched (see `candidates`)."
    )
    candidates: list[CustomerMatch] = strawberry.field(
        description="Every distinct customer matched, those matching the most arguments first, "
        "then by id. One entry when the match is not ambiguous.",
        metadata={"list_size": 5},
    )


@strawberry.type(description="A customer found by a search, with the cursor that points at it.")
class CustomerSearchEdge:
    cursor: str = strawberry.field(description="Opaque cursor of this customer in the results.")
    node: Customer = strawberry.field(description="The customer.")


@strawberry.type(description="A page of search results, by last name, first name, then id.")
class CustomerSearchConnection:
    edges: list[CustomerSearchEdge] = strawberry.field(description="The customers of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page sits.")


def _e164(phone: str, region: str) -> str:
    """A phone number as written by a person, in E.164; BAD_USER_INPUT when it is not one."""
    try:
        parsed = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException as error:
        raise UserInputError(
            f"`phone` {phone!r} is not a phone number; give it in international form "
            f"(+44 7700 900321) or as dialled in {region} (07700 900321)."
        ) from error
    if not phonenumbers.is_possible_number(parsed):
        raise UserInputError(
            f"`phone` {phone!r} cannot be a phone number (wrong length for its country); give "
            f"it in international form (+44 7700 900321) or as dialled in {region}."
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


async def _matches(
    info: Info, email: str | None, phone: str | None, external: tuple[str, str] | None
) -> list[tuple[LookupField, CustomerRecord]]:
    """Every record each argument names. The external id goes to MongoDB first, so that the
    email, the phone and the ids it gives reach SQL together: one statement in all."""
    loaders = info.context.loaders
    contacts: list[tuple[LookupField, Contact]] = []
    if external is not None:
        ids = await load(info, loaders.mongo.customer_ids_by_identity, external) or []
        contacts += [(LookupField.EXTERNAL_ID, Contact("id", i)) for i in ids]
    if email is not None:
        contacts.append((LookupField.EMAIL, Contact("email", email)))
    if phone is not None:
        contacts.append((LookupField.PHONE, Contact("phone", phone)))
    loader = loaders.sql.customers_by_contact
    found = await asyncio.gather(*(load(info, loader, contact) for _, contact in contacts))
    return [
        (field, record)
        for (field, _), records in zip(contacts, found, strict=True)
        for record in records or []
    ]


def _lookup_arguments(
    info: Info, email: str | None, phone: str | None, external_id: ExternalIdInput | None
) -> tuple[str | None, str | None, tuple[str, str] | None]:
    """The arguments, normalised; BAD_USER_INPUT for none at all or one that is blank."""
    if email is None and phone is None and external_id is None:
        raise UserInputError("Give at least one of `email`, `phone` or `externalId`.")
    if email is not None:
        email = normalise_email(email)
        if not email:
            raise UserInputError("`email` is blank; give an email address or leave it out.")
    if phone is not None:
        phone = _e164(phone, info.context.settings.phone_region)
    external: tuple[str, str] | None = None
    if external_id is not None:
        value = external_id.value.strip()
        if not value:
            raise UserInputError("`externalId.value` is blank; give the identifier.")
        external = (external_id.type.value, value)
    return email, phone, external


@strawberry.type
class IdentityQuery:
    @strawberry.field(
        description="Who is this? The customer holding an email (case and surrounding spaces "
        "do not matter), a phone number (international, or as dialled in the default region, "
        "C360_PHONE_REGION) and/or an external id (web anonymous id, device id, loyalty "
        "number, CRM id). Null when nothing matches. When the arguments lead to more than one "
        "customer (a shared phone, an email and a phone of different people) the result is "
        "ambiguous and lists every candidate with what it matched. A merged customer's "
        "identifiers lead to the survivor. For staff and service keys with `customers:read`; "
        "not the customer role.",
        extensions=[staff_lookup(Scope.CUSTOMERS)],
    )
    async def customer_lookup(
        self,
        info: Info,
        email: Annotated[
            str | None, strawberry.argument(description="An email address, in any case.")
        ] = None,
        phone: Annotated[
            str | None,
            strawberry.argument(
                description="A phone number: `+44 7700 900321`, or `07700 900321` as dialled "
                "in the default region. Spaces, dots, dashes and brackets are ignored."
            ),
        ] = None,
        external_id: Annotated[
            ExternalIdInput | None,
            strawberry.argument(description="An identifier from another system."),
        ] = None,
    ) -> CustomerLookup | None:
        email, phone, external = _lookup_arguments(info, email, phone, external_id)
        matches = await _matches(info, email, phone, external)
        survivors = await asyncio.gather(*(surviving_customer(info, r) for _, r in matches))
        candidates: dict[int, tuple[Customer, list[LookupField]]] = {}
        for (field, _), customer in zip(matches, survivors, strict=True):
            if customer is None:
                continue
            _, fields = candidates.setdefault(customer.customer_id, (customer, []))
            if field not in fields:
                fields.append(field)
        if not candidates:
            return None
        order = [LookupField.EMAIL, LookupField.PHONE, LookupField.EXTERNAL_ID]
        ranked = sorted(candidates.values(), key=lambda c: (-len(c[1]), c[0].customer_id))
        return CustomerLookup(
            customer=ranked[0][0] if len(ranked) == 1 else None,
            ambiguous=len(ranked) > 1,
            candidates=[
                CustomerMatch(customer=customer, matched_on=sorted(fields, key=order.index))
                for customer, fields in ranked
            ],
        )

    @strawberry.field(
        description="Find customers as an agent types: every word of `query` must start a "
        "first name, a last name, an email (or its part before the @) or a phone number's "
        "digits (`07700 9`, `+44 7700`, `7700`) of the customer. Results by last name, first "
        "name, then id; merged customers are left out. For staff and service keys with "
        "`customers:read`; not the customer role. Emails and phones are searched only for "
        "those who read them in clear (agent, admin, a service with `pii:read`); for others "
        "words match names alone, and an email or phone word is refused (FORBIDDEN).",
        extensions=[staff_lookup(Scope.CUSTOMERS)],
    )
    async def search_customers(
        self,
        info: Info,
        query: Annotated[
            str,
            strawberry.argument(
                description=f"What the agent typed: at least {SEARCH_MIN_CHARS} characters, "
                f"at most {MAX_WORDS} words, any case."
            ),
        ],
        first: Annotated[
            int | None,
            strawberry.argument(description="Page size: default 20, at most 100 (C360_PAGE_MAX)."),
        ] = None,
        after: Annotated[
            str | None,
            strawberry.argument(
                description="Customers after this cursor (a previous `endCursor`)."
            ),
        ] = None,
    ) -> CustomerSearchConnection | None:
        size = page_size(info, first)
        text = query.strip()
        if not SEARCH_MIN_CHARS <= len(text) <= SEARCH_MAX_CHARS:
            raise UserInputError(
                f"`query` must hold {SEARCH_MIN_CHARS} to {SEARCH_MAX_CHARS} characters (spaces "
                f"around it aside); got {len(text)}."
            )
        terms = query_terms(text, region=info.context.settings.phone_region)
        if len(terms) > MAX_WORDS:
            raise UserInputError(f"`query` may hold at most {MAX_WORDS} words; got {len(terms)}.")
        if not reads_pii_in_clear(info.context.principal):
            # Prefixes of masked emails and phones would be an oracle for them, a letter at a
            # time: names only.
            names = names_only(terms)
            if names is None:
                raise forbidden(
                    "Not allowed: searching by email or phone is for those who read them in "
                    "clear (agent, admin, a service with `pii:read`); search by name."
                )
            terms = names
        position = None
        if after is not None:
            try:
                position = decode_search_cursor(after)
            except CursorError as error:
                raise UserInputError(
                    "`after` is not a cursor of customer search; pass an `endCursor` or "
                    "`cursor` value of these results unchanged."
                ) from error
        key = SearchKey(terms=terms, first=size, after=position)
        page = await load(info, info.context.loaders.sql.customer_search_page, key)
        assert page is not None
        positions = page.positions
        cursors = [encode_search_cursor(p) for p in positions]
        return CustomerSearchConnection(
            edges=[
                CustomerSearchEdge(cursor=cursor, node=Customer.from_record(record))
                for cursor, record in zip(cursors, page.customers, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next,
                has_previous_page=after is not None,
                positions=positions,
                encode=encode_search_cursor,
            ),
        )
