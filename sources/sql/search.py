"""Customer search: the searchable terms of each customer, and prefix search over them.

Every customer has a few terms in `customer_search`, each of a kind: names (lower case), the
email and its local part, the phone's digits with and without the country code. Terms compare
byte-wise (the "C" collation on PostgreSQL, SQLite's default), so "every name starting with
`p`" is the index range `kind = 'n' AND term >= p AND term < successor(p)`: a search reads only
the terms it matches, however many customers there are. The kinds let a search leave out the
email and phone terms for whoever may not read them in clear: otherwise trying one more
letter or digit at a time would spell out what masking hides.

Terms are written with the customer: by the seeder, by every contact change (in the same
transaction), and by `reindex_search` for a database seeded before terms existed.

Over 400 lines: the terms written for a customer and the queries that read them must agree on
every kind and normalisation: they are kept in one module so that they change together."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
import phonenumbers
from sqlalchemy import (
    BigInteger,
    BindParameter,
    Select,
    String,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    intersect,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sources.paging import CursorError
from sources.sql import models
from sources.sql.engine import begin_write
from sources.sql.records import CustomerRecord

# Terms longer than the column are cut: a prefix that long still finds its customer.
TERM_MAX = 320
# More words than this in one query is not a person typing: refused by the resolver.
MAX_WORDS = 8
# Rows per INSERT when writing terms (a few per customer).
_INSERT_BATCH = 5000

_customers = models.table(models.Customer)
_terms = models.table(models.CustomerSearchTerm)
_SEPARATORS = re.compile(r"[\s().\-/]+")
_PHONE_LIKE = re.compile(r"\+?[\d\s().\-/]*\d[\d\s().\-/]*")
_NAME_PARTS = re.compile(r"[\s\-]+")


class TermKind(StrEnum):
    """What a search term is of (the `kind` column)."""

    NAME = "n"
    EMAIL = "e"
    PHONE = "p"


# A term, or a prefix searched for: its kind and its text.
Term = tuple[TermKind, str]


class Searchable(NamedTuple):
    """What a customer is found by."""

    id: int
    first_name: str
    last_name: str
    email: str
    phone: str | None

    @classmethod
    def of(cls, customer: CustomerRecord | Mapping[str, Any]) -> Searchable:
        """From a customer record or a `customers` row as a dict (the seeder's)."""
        if isinstance(customer, CustomerRecord):
            return cls(
                customer.id,
                customer.first_name,
                customer.last_name,
                customer.email,
                customer.phone,
            )
        return cls(
            customer["id"],
            customer["first_name"],
            customer["last_name"],
            customer["email"],
            customer["phone"],
        )


def _name_terms(name: str) -> set[str]:
    whole = " ".join(name.lower().split())
    return {whole, *(part for part in _NAME_PARTS.split(whole) if part)}


def _phone_terms(phone: str) -> set[str]:
    digits = re.sub(r"\D", "", phone)
    terms = {digits}
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return terms
    terms.add(phonenumbers.national_significant_number(parsed))
    return terms


def search_terms(*, first_name: str, last_name: str, email: str, phone: str | None) -> set[Term]:
    """A customer's search terms: lower-case first and last name (whole, and each part of a
    name of several words), the full email and its local part, and the phone's digits both
    without the '+' (`447700900321`) and as its national significant number (`7700900321`)."""
    email = email.strip().lower()
    kinds = {
        TermKind.NAME: _name_terms(first_name) | _name_terms(last_name),
        TermKind.EMAIL: {email, email.split("@", 1)[0]},
        TermKind.PHONE: _phone_terms(phone) if phone else set(),
    }
    return {(kind, term[:TERM_MAX]) for kind, terms in kinds.items() for term in terms if term}


def term_rows(customers: Iterable[Searchable]) -> list[dict[str, Any]]:
    """The `customer_search` rows of some customers."""
    return [
        {"customer_id": c.id, "kind": kind.value, "term": term}
        for c in customers
        for kind, term in search_terms(
            first_name=c.first_name, last_name=c.last_name, email=c.email, phone=c.phone
        )
    ]


async def write_search_terms(
    *, connection: AsyncConnection, customers: Sequence[Searchable], replace: bool = True
) -> int:
    """(Re)write the terms of `customers` in the caller's transaction; returns rows written.

    One DELETE for all of them (unless `replace` is off, for customers known to have none),
    then one INSERT per few thousand rows.
    """
    if not customers:
        return 0
    if replace:
        await connection.execute(
            delete(_terms).where(_terms.c.customer_id.in_([c.id for c in customers]))
        )
    rows = term_rows(customers)
    for start in range(0, len(rows), _INSERT_BATCH):
        await connection.execute(insert(_terms), rows[start : start + _INSERT_BATCH])
    return len(rows)


async def reindex_search(
    *, engine: AsyncEngine, batch: int = 2000, progress: Callable[[int], object] | None = None
) -> int:
    """Rewrite every customer's terms, `batch` customers per transaction (for a database
    that holds customers without terms); returns how many customers were indexed."""
    columns = (_customers.c.id, *(_customers.c[n] for n in Searchable._fields[1:]))
    # Locked while their terms are rewritten: a contact change committed meanwhile would
    # otherwise have its new terms replaced by ones made from the row as it was read.
    page = select(*columns).order_by(_customers.c.id).limit(batch).with_for_update()
    last_id, done = 0, 0
    while True:
        async with begin_write(engine) as connection:
            rows = await connection.execute(page.where(_customers.c.id > last_id))
            customers = [Searchable(*row) for row in rows]
            await write_search_terms(connection=connection, customers=customers)
        if not customers:
            return done
        last_id = customers[-1].id
        done += len(customers)
        if progress is not None:
            progress(len(customers))


def _digit_prefixes(word: str, region: str) -> tuple[str, ...]:
    """What a phone-like word may be a prefix of: its digits as typed (international without
    '+', or national without the trunk prefix), and, when written nationally with the trunk
    prefix of `region` (`07700 9` in GB), as E.164 digits (`4477009`)."""
    digits = re.sub(r"\D", "", word)
    prefixes = [digits]
    if not word.startswith("+"):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
        trunk = metadata.national_prefix if metadata else None
        if metadata and trunk and digits.startswith(trunk) and len(digits) > len(trunk):
            prefixes.append(f"{metadata.country_code}{digits[len(trunk) :]}")
    return tuple(dict.fromkeys(p[:TERM_MAX] for p in prefixes if p))


def query_terms(query: str, *, region: str) -> tuple[tuple[Term, ...], ...]:
    """A search query as the terms to match: one tuple of alternative prefixes per word.

    Words are lower-cased, like the terms. A query that is all a phone number (digits, '+'
    and separators, as in `07700 900321`) is one word; so is each phone-like word of a query,
    and it matches phone terms. A word with an '@' matches emails; any other word, names and
    emails.
    """
    query = query.strip()
    if _PHONE_LIKE.fullmatch(query):
        words = [query]
    else:
        words = query.split()
    terms: dict[tuple[Term, ...], None] = {}
    for word in words:
        alternatives: tuple[Term, ...]
        if _PHONE_LIKE.fullmatch(word):
            alternatives = tuple((TermKind.PHONE, p) for p in _digit_prefixes(word, region))
        elif "@" in word:
            alternatives = ((TermKind.EMAIL, word.lower()[:TERM_MAX]),)
        else:
            text = word.lower()[:TERM_MAX]
            alternatives = ((TermKind.NAME, text), (TermKind.EMAIL, text))
        if alternatives:
            terms[alternatives] = None
    return tuple(terms)


def names_only(terms: Sequence[Sequence[Term]]) -> tuple[tuple[Term, ...], ...] | None:
    """The query's name alternatives alone, for a principal that may not read emails and
    phones in clear; None when a word has no name alternative (it is an email or a phone)."""
    names = tuple(tuple(t for t in word if t[0] is TermKind.NAME) for word in terms)
    return names if all(names) else None


def _successor(prefix: str) -> str:
    """The least string above every string that starts with `prefix`, in code point (that is,
    UTF-8 byte) order."""
    while prefix and prefix[-1] == "\U0010ffff":
        prefix = prefix[:-1]
    if not prefix:
        return "\U0010ffff" * (TERM_MAX + 1)  # above any term, which is at most TERM_MAX long
    following = ord(prefix[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters
        following = 0xE000
    return prefix[:-1] + chr(following)


@dataclass(frozen=True, slots=True)
class SearchPosition:
    """Where a search page ends: the sort key of its last customer."""

    last_name: str
    first_name: str
    id: int


def encode_search_cursor(position: SearchPosition) -> str:
    """An opaque cursor for a search position (clients must not parse it)."""
    raw = orjson.dumps(["s", position.last_name, position.first_name, position.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_search_cursor(cursor: str) -> SearchPosition:
    """The position of a cursor made by `encode_search_cursor`, or CursorError."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, last_name, first_name, ident = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError) as error:
        raise CursorError(f"invalid search cursor {cursor!r}") from error
    valid = (
        tag == "s"
        and isinstance(last_name, str)
        and isinstance(first_name, str)
        # c360's names cannot hold NUL (PostgreSQL text cannot), and PostgreSQL refuses it.
        and "\x00" not in last_name + first_name
        and isinstance(ident, int)
        and 0 < ident < 2**63
    )
    if not valid:
        raise CursorError(f"invalid search cursor {cursor!r}")
    return SearchPosition(last_name=last_name, first_name=first_name, id=ident)


@dataclass(frozen=True, slots=True)
class SearchKey:
    """One search page request: the query's terms (see `query_terms`), size and cursor."""

    terms: tuple[tuple[Term, ...], ...]
    first: int
    after: SearchPosition | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    customers: list[CustomerRecord]
    has_next: bool

    @property
    def positions(self) -> list[SearchPosition]:
        return [SearchPosition(c.last_name, c.first_name, c.id) for c in self.customers]


@lru_cache(maxsize=256)
def _search_statement(shape: tuple[int, ...], after: bool, postgres: bool) -> Select[Any]:
    """The search query for one shape (alternatives per word); values are bind parameters.

    The ids of the customers matching every word come from the term index alone (a range scan
    per alternative, the words' ids intersected); only those customers are read, by primary
    key, sorted by name and cut after the page. The work grows with the matches, not with the
    number of customers.
    """
    matching = [
        select(_terms.c.customer_id).where(
            or_(
                *(
                    and_(
                        _terms.c.kind == bindparam(f"k{word}_{n}", type_=String()),
                        _terms.c.term >= bindparam(f"p{word}_{n}", type_=String()),
                        _terms.c.term < bindparam(f"n{word}_{n}", type_=String()),
                    )
                    for n in range(alternatives)
                )
            )
        )
        for word, alternatives in enumerate(shape)
    ]
    ids = intersect(*matching) if len(matching) > 1 else matching[0].distinct()
    if postgres:
        # An array of ids rather than a semi-join: a prepared statement's generic plan cannot
        # know how many customers a prefix matches, and plans the semi-join as a hash join
        # over every customer row; `id = ANY(array)` probes the primary key for the matches.
        matched = _customers.c.id == any_(func.array(ids.scalar_subquery()))
    else:
        matched = _customers.c.id.in_(ids)
    where: list[Any] = [_customers.c.status != "MERGED", matched]
    order = (_customers.c.last_name, _customers.c.first_name, _customers.c.id)
    if after:
        last: BindParameter[str] = bindparam("after_last", type_=String())
        first: BindParameter[str] = bindparam("after_first", type_=String())
        ident: BindParameter[int] = bindparam("after_id", type_=BigInteger())
        where.append(tuple_(*order) > tuple_(last, first, ident))
    return (
        select(*_customers.columns)
        .where(*where)
        .order_by(*order)
        .limit(bindparam("limit", type_=BigInteger()))
    )


async def search_customers(
    *,
    connection: AsyncConnection,
    terms: Sequence[Sequence[Term]],
    first: int,
    after: SearchPosition | None,
) -> SearchPage:
    """Customers matching every word of `terms` (a word matches when some term of the
    customer is of the kind of one of its alternatives and starts with its text), merged ones
    left out, ordered by last name, first name and id, after `after`: one statement."""
    if not terms or first <= 0:
        return SearchPage(customers=[], has_next=False)
    params: dict[str, Any] = {"limit": first + 1}
    for word, alternatives in enumerate(terms):
        for n, (kind, prefix) in enumerate(alternatives):
            params[f"k{word}_{n}"] = kind.value
            params[f"p{word}_{n}"] = prefix
            params[f"n{word}_{n}"] = _successor(prefix)
    if after is not None:
        params |= {
            "after_last": after.last_name,
            "after_first": after.first_name,
            "after_id": after.id,
        }
    postgres = connection.dialect.name == "postgresql"
    stmt = _search_statement(tuple(len(a) for a in terms), after is not None, postgres)
    records = [CustomerRecord(*row) for row in await connection.execute(stmt, params)]
    return SearchPage(customers=records[:first], has_next=len(records) > first)


async def search_pages(
    *, connection: AsyncConnection, keys: Sequence[SearchKey]
) -> list[SearchPage]:
    """The page of each search key: one statement per distinct key (one request rarely asks
    for more than one search)."""
    pages: dict[SearchKey, SearchPage] = {}
    for key in dict.fromkeys(keys):
        pages[key] = await search_customers(
            connection=connection, terms=key.terms, first=key.first, after=key.after
        )
    return [pages[key] for key in keys]


async def terms_missing(*, engine: AsyncEngine) -> bool:
    """Whether some customer has no search terms (every customer has some: a name, an email):
    a database loaded before search existed, one whose terms a migration remade, or a reindex
    cut short; `reindex_search` fills them in. One anti-join on the terms' primary key."""
    unindexed = (
        select(_customers.c.id)
        .where(
            ~select(_terms.c.customer_id).where(_terms.c.customer_id == _customers.c.id).exists()
        )
        .limit(1)
    )
    async with engine.connect() as connection:
        return (await connection.execute(unindexed)).first() is not None
