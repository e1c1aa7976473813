"""Search terms: what each customer is found by, how queries become prefixes, keeping terms."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from api.connections import Connections
from sources.paging import CursorError
from sources.sql import models
from sources.sql.search import (
    SearchPosition,
    TermKind,
    _successor,
    decode_search_cursor,
    encode_search_cursor,
    names_only,
    query_terms,
    reindex_search,
    search_customers,
    search_terms,
)
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer

_terms = models.table(models.CustomerSearchTerm)
N, E, P = TermKind.NAME, TermKind.EMAIL, TermKind.PHONE


def word(text: str) -> tuple[tuple[TermKind, str], ...]:
    """A plain word's alternatives: it may start a name or an email."""
    return ((N, text), (E, text))


def test_terms_are_names_email_and_phone_digits_in_lower_case() -> None:
    terms = search_terms(
        first_name="Mary Ann",
        last_name="Smith-Jones",
        email=" Mary.Ann@Example.COM",
        phone="+447700900321",
    )
    assert terms == {
        (N, "mary ann"),
        (N, "mary"),
        (N, "ann"),
        (N, "smith-jones"),
        (N, "smith"),
        (N, "jones"),
        (E, "mary.ann@example.com"),
        (E, "mary.ann"),
        (P, "447700900321"),
        (P, "7700900321"),
    }


def test_a_customer_without_a_phone_has_no_phone_terms() -> None:
    assert search_terms(first_name="Ada", last_name="Xu", email="ada@x.io", phone=None) == {
        (N, "ada"),
        (N, "xu"),
        (E, "ada@x.io"),
        (E, "ada"),
    }


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        ("Ada", (word("ada"),)),
        ("  ada   LOVELACE ada ", (word("ada"), word("lovelace"))),
        ("ada.l@ex", (((E, "ada.l@ex"),),)),
        # A whole query that is a phone number is one word, however it is spaced.
        ("07700 900321", (((P, "07700900321"), (P, "447700900321")),)),
        ("+44 7700 900321", (((P, "447700900321"),),)),
        ("(0)7700-900", (((P, "07700900"), (P, "447700900")),)),
        ("7700 9", (((P, "77009"),),)),
        ("ada 07700", (word("ada"), ((P, "07700"), (P, "447700")))),
        ("0", (((P, "0"),),)),
    ],
)
def test_queries_become_one_set_of_alternative_prefixes_per_word(
    query: str, terms: tuple[tuple[tuple[TermKind, str], ...], ...]
) -> None:
    assert query_terms(query, region="GB") == terms


def test_names_only_keeps_the_name_alternatives_or_refuses() -> None:
    assert names_only(query_terms("ada lov", region="GB")) == (((N, "ada"),), ((N, "lov"),))
    assert names_only(query_terms("ada 07700", region="GB")) is None
    assert names_only(query_terms("ada@ex", region="GB")) is None


def test_the_trunk_prefix_is_the_default_regions() -> None:
    assert query_terms("0151 496", region="GB") == (((P, "0151496"), (P, "44151496")),)
    assert query_terms("1 202 555", region="US") == (((P, "1202555"),),)  # "1" is the US trunk
    assert query_terms("030 1234", region="DE") == (((P, "0301234"), (P, "49301234")),)


def test_the_successor_bounds_every_string_with_the_prefix() -> None:
    assert _successor("ab") == "ac"
    assert _successor("a\U0010ffff") == "b"
    assert _successor("\ud7ff") == "\ue000"
    for prefix in ("ab", "zz", "é", "9"):
        after = _successor(prefix)
        assert prefix < prefix + "\U0010ffff" * 3 < after
        assert after.encode() > (prefix + "\U0010ffff").encode()


def test_search_cursors_round_trip_and_refuse_others() -> None:
    position = SearchPosition(last_name="Ó Briain", first_name="Dara", id=42)
    assert decode_search_cursor(encode_search_cursor(position)) == position
    for bad in ("", "not-base64!", "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwiMSJd", "WyJzIiwxLDIsM10"):
        with pytest.raises(CursorError):
            decode_search_cursor(bad)


async def test_seeded_customers_have_their_terms(connections: Connections) -> None:
    async with connections.engine.connect() as sql:
        customer = (
            await sql.execute(select(models.table(models.Customer)).where(models.Customer.id == 1))
        ).one()
        rows = await sql.execute(
            select(_terms.c.kind, _terms.c.term).where(_terms.c.customer_id == 1)
        )
        stored = {(TermKind(kind), term) for kind, term in rows}
    assert stored == search_terms(
        first_name=customer.first_name,
        last_name=customer.last_name,
        email=customer.email,
        phone=customer.phone,
    )


async def test_reindex_writes_the_terms_of_customers_that_have_none(
    connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(
        connections, vendor_store, contact={"first_name": "Reindexed", "last_name": "Vargaqq"}
    )
    async with connections.engine.begin() as sql:
        await sql.execute(delete(_terms).where(_terms.c.customer_id == cid))
        page = await search_customers(connection=sql, terms=[word("vargaqq")], first=5, after=None)
        assert page.customers == []

    indexed: list[int] = []
    total = await reindex_search(engine=connections.engine, batch=7, progress=indexed.append)

    async with connections.engine.connect() as sql:
        page = await search_customers(
            connection=sql, terms=[word("reindexed"), word("varga")], first=5, after=None
        )
        customers = await sql.execute(select(models.table(models.Customer).c.id))
    assert [c.id for c in page.customers] == [cid]
    assert sum(indexed) == total == len(customers.all())
    assert max(indexed) <= 7


async def test_an_empty_query_or_page_finds_nothing(connections: Connections) -> None:
    async with connections.engine.connect() as sql:
        for terms, first in (([], 5), ([word("ada")], 0)):
            page = await search_customers(connection=sql, terms=terms, first=first, after=None)
            assert (page.customers, page.has_next) == ([], False)
