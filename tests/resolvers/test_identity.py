"""Identity lookup and customer search through the graph, on every SQL backend."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode, parse

from api.connections import Connections
from api.limits import check_cost
from domain.merges import merge_customers
from domain.principal import Role
from resolvers.schema import create_schema
from sources.thirdparty.simulator import VendorStore
from tests.auth import PUBLISHER, bearer
from tests.builders import build_customer
from tests.queries import graphql
from tests.trips import trips

LOOKUP = """query($email: String, $phone: String, $externalId: ExternalIdInput) {
  customerLookup(email: $email, phone: $phone, externalId: $externalId) {
    customer { id }
    ambiguous
    candidates { customer { id status } matchedOn } } }"""

SEARCH = """query($query: String!, $first: Int, $after: String) {
  searchCustomers(query: $query, first: $first, after: $after) {
    edges { cursor node { id firstName lastName } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""

CONTACT = """mutation($input: UpdateCustomerContactInput!) { updateCustomerContact(input: $input) {
  __typename ... on UpdateCustomerContactError { code message } } }"""

# Phones no other test uses: each test takes its own (the database lives for the session).
_phones = itertools.count(1000)


def new_phone() -> str:
    return f"+4477009{next(_phones):05d}"


def tag() -> str:
    """A word no other customer's name holds: letters only, so it is never read as a phone."""
    return "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


async def lookup(client: httpx.AsyncClient, **variables: Any) -> dict[str, Any] | None:
    body = await graphql(client, LOOKUP, variables)
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] | None = body["data"]["customerLookup"]
    return result


def only(cid: int, *matched_on: str) -> dict[str, Any]:
    """The lookup result of exactly one customer."""
    return {
        "customer": {"id": str(cid)},
        "ambiguous": False,
        "candidates": [
            {"customer": {"id": str(cid), "status": "ACTIVE"}, "matchedOn": list(matched_on)}
        ],
    }


def error_code(body: dict[str, Any]) -> str:
    [error] = body["errors"]
    code: str = error["extensions"]["code"]
    return code


async def merge(connections: Connections, merged: int, survivor: int) -> None:
    """Merge `merged` into `survivor`, as `mergeCustomers` does."""
    await merge_customers(
        connections.changes, survivor_id=survivor, merged_id=merged, merged_by="test"
    )


# --- lookup ---------------------------------------------------------------------------------


async def test_lookup_by_email_ignores_case_and_surrounding_spaces(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    email = f"ada.{tag()}@example.com"
    cid = await build_customer(connections, vendor_store, contact={"email": email})

    assert await lookup(client, email=f"  {email.upper()}\t") == only(cid, "EMAIL")


async def test_lookup_by_phone_in_national_and_international_form(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    phone = new_phone()  # +4477009nnnnn: like 07700 900321, a number of its own
    cid = await build_customer(connections, vendor_store, contact={"phone": phone})
    national, subscriber = phone[3:7], phone[7:]

    for written in (
        f"0{national} {subscriber}",  # 07700 9nnnnn, as dialled in GB (the default region)
        f"+44 {national} {subscriber}",
        f"+44 (0){national}-{subscriber[:3]}-{subscriber[3:]}",
        phone,
    ):
        assert await lookup(client, phone=written) == only(cid, "PHONE"), written


@pytest.mark.parametrize("kind", ["WEB_ANONYMOUS_ID", "DEVICE_ID", "LOYALTY_NUMBER", "CRM_ID"])
async def test_lookup_by_each_kind_of_external_id(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore, kind: str
) -> None:
    value = f"{kind[:3]}-{tag()}"
    identities = [
        {"type": kind, "value": value},
        {"type": "CRM_ID" if kind != "CRM_ID" else "DEVICE_ID", "value": f"other-{tag()}"},
    ]
    cid = await build_customer(connections, vendor_store, profile=profile(identities))

    assert await lookup(client, externalId={"type": kind, "value": value}) == only(
        cid, "EXTERNAL_ID"
    )
    # The same value under another type is another identifier.
    other = "CRM_ID" if kind != "CRM_ID" else "LOYALTY_NUMBER"
    assert await lookup(client, externalId={"type": other, "value": value}) is None


def profile(identities: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "traits": {},
        "segments": [],
        "preferences": {"channels": ["EMAIL"], "language": "en"},
        "consents": [],
        "identities": identities,
        "computed": {"lifetime_value_minor": 0, "currency": "EUR"},
    }


async def test_a_phone_shared_by_two_customers_is_ambiguous(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    phone = new_phone()
    first = await build_customer(connections, vendor_store, contact={"phone": phone})
    second = await build_customer(connections, vendor_store, contact={"phone": phone})

    assert await lookup(client, phone=phone) == {
        "customer": None,
        "ambiguous": True,
        "candidates": [
            {"customer": {"id": str(first), "status": "ACTIVE"}, "matchedOn": ["PHONE"]},
            {"customer": {"id": str(second), "status": "ACTIVE"}, "matchedOn": ["PHONE"]},
        ],
    }


async def test_email_and_phone_of_different_customers_are_ambiguous(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    email, phone = f"grace.{tag()}@example.com", new_phone()
    by_email = await build_customer(connections, vendor_store, contact={"email": email})
    by_phone = await build_customer(connections, vendor_store, contact={"phone": phone})

    result = await lookup(client, email=email, phone=phone)

    assert result is not None
    assert result["customer"] is None and result["ambiguous"] is True
    assert {c["customer"]["id"]: c["matchedOn"] for c in result["candidates"]} == {
        str(by_email): ["EMAIL"],
        str(by_phone): ["PHONE"],
    }


async def test_arguments_that_agree_name_one_customer_with_every_match(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    email, phone, crm = f"lina.{tag()}@example.com", new_phone(), f"CRM-{tag()}"
    cid = await build_customer(
        connections,
        vendor_store,
        contact={"email": email, "phone": phone},
        profile=profile([{"type": "CRM_ID", "value": crm}]),
    )

    result = await lookup(
        client, email=email, phone=phone, externalId={"type": "CRM_ID", "value": crm}
    )

    assert result == only(cid, "EMAIL", "PHONE", "EXTERNAL_ID")


async def test_a_merged_customers_identifiers_land_on_the_survivor(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    merged_email, loyalty, survivor_phone = f"old.{tag()}@example.com", f"LOY{tag()}", new_phone()
    survivor = await build_customer(connections, vendor_store, contact={"phone": survivor_phone})
    merged = await build_customer(
        connections,
        vendor_store,
        contact={"email": merged_email},
        profile=profile([{"type": "LOYALTY_NUMBER", "value": loyalty}]),
    )
    await merge(connections, merged, survivor)

    assert await lookup(client, email=merged_email) == only(survivor, "EMAIL")
    assert await lookup(client, externalId={"type": "LOYALTY_NUMBER", "value": loyalty}) == only(
        survivor, "EXTERNAL_ID"
    )
    # Two ways to the same person are one candidate, not an ambiguity.
    assert await lookup(client, email=merged_email, phone=survivor_phone) == only(
        survivor, "EMAIL", "PHONE"
    )


async def test_nothing_matching_is_null(client: httpx.AsyncClient) -> None:
    assert await lookup(client, email=f"nobody.{tag()}@example.com") is None
    assert await lookup(client, phone="+44 7700 900999") is None
    assert await lookup(client, externalId={"type": "DEVICE_ID", "value": tag()}) is None


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({}, "at least one of `email`, `phone` or `externalId`"),
        ({"phone": "call me maybe"}, "is not a phone number"),
        ({"phone": "+44 12"}, "cannot be a phone number"),
        ({"email": "   "}, "`email` is blank"),
        ({"externalId": {"type": "CRM_ID", "value": " "}}, "`externalId.value` is blank"),
    ],
)
async def test_lookup_arguments_that_cannot_name_anyone_are_bad_input(
    client: httpx.AsyncClient, variables: dict[str, Any], message: str
) -> None:
    body = await graphql(client, LOOKUP, variables)
    assert body["data"] == {"customerLookup": None}
    assert error_code(body) == "BAD_USER_INPUT"
    assert message in body["errors"][0]["message"]


async def test_a_lookup_costs_at_most_one_round_trip_per_source(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    email, phone, device = f"kai.{tag()}@example.com", new_phone(), f"dev-{tag()}"
    await build_customer(
        connections,
        vendor_store,
        contact={"email": email, "phone": phone},
        profile=profile([{"type": "DEVICE_ID", "value": device}]),
    )
    external = {"type": "DEVICE_ID", "value": device}
    cases: list[tuple[dict[str, Any], dict[str, int]]] = [
        ({"email": email}, {"sql": 1, "mongo": 0}),
        ({"phone": phone}, {"sql": 1, "mongo": 0}),
        ({"externalId": external}, {"sql": 1, "mongo": 1}),
        ({"email": email, "phone": phone, "externalId": external}, {"sql": 1, "mongo": 1}),
    ]
    for variables, expected in cases:
        before = connections.round_trips.snapshot()
        result = await lookup(client, **variables)
        spent = connections.round_trips.since(before)
        assert result is not None and result["ambiguous"] is False
        assert spent == trips(**expected), variables


# --- search ---------------------------------------------------------------------------------


async def search(
    client: httpx.AsyncClient, query: str, *, first: int | None = None, after: str | None = None
) -> dict[str, Any]:
    body = await graphql(client, SEARCH, {"query": query, "first": first, "after": after})
    assert "errors" not in body, body["errors"]
    connection: dict[str, Any] = body["data"]["searchCustomers"]
    return connection


async def found(client: httpx.AsyncClient, query: str) -> list[int]:
    connection = await search(client, query, first=100)
    assert connection["pageInfo"]["hasNextPage"] is False
    return [int(edge["node"]["id"]) for edge in connection["edges"]]


async def test_search_finds_prefixes_of_names_email_and_phone(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    word, phone = tag(), new_phone()
    cid = await build_customer(
        connections,
        vendor_store,
        contact={
            "first_name": f"Amira{word}",
            "last_name": f"Okafor{word}",
            "email": f"{word}.mail@example.com",
            "phone": phone,
        },
    )
    national = "0" + phone[3:]  # +4477009xxxxx as dialled in GB: 077009xxxxx

    assert await found(client, f"amira{word}") == [cid]
    assert cid in await found(client, f"AMIRA{word[:3]}")
    assert await found(client, f"Okafor{word}") == [cid]
    assert await found(client, f"{word}.ma") == [cid]
    assert await found(client, f"{word}.mail@example.com") == [cid]
    assert cid in await found(client, phone[:-2])  # +44770090..
    assert await found(client, phone) == [cid]
    assert await found(client, phone[1:]) == [cid]  # digits, no +
    assert await found(client, f"{national[:5]} {national[5:]}") == [cid]  # 07700 9xxxxx
    assert await found(client, phone[3:]) == [cid]  # national significant number
    assert await found(client, f"{word}zzz") == []


async def test_every_word_must_match(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    word = tag()
    ada = await build_customer(
        connections, vendor_store, contact={"first_name": "Ada", "last_name": f"Lovelace{word}"}
    )
    await build_customer(
        connections, vendor_store, contact={"first_name": "Alan", "last_name": f"Lovelace{word}"}
    )

    assert len(await found(client, f"lovelace{word}")) == 2
    assert await found(client, f"ada lovelace{word}") == [ada]
    assert await found(client, f"  lovelace{word}   AD ") == [ada]
    assert await found(client, f"lovelace{word} ada nobody{word}") == []


async def test_search_pages_through_every_match_once_in_name_order(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    word = tag()
    names = [("Cara", "B"), ("Ben", "A"), ("Ben", "A"), ("Dan", "A"), ("Abe", "C"), ("Ben", "B")]
    built = [
        (
            last,
            first,
            await build_customer(
                connections,
                vendor_store,
                contact={
                    "first_name": first,
                    "last_name": f"{last}{word}",
                    "email": f"{word}.{n}@x.io",
                },
            ),
        )
        for n, (first, last) in enumerate(names)
    ]
    expected = [cid for _, _, cid in sorted(built)]

    seen: list[int] = []
    after = None
    pages = 0
    while True:
        page = await search(client, f"{word}.", first=2, after=after)
        pages += 1
        seen += [int(edge["node"]["id"]) for edge in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]

    assert seen == expected
    assert pages == 3


async def test_search_leaves_merged_customers_out(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    word = tag()
    survivor = await build_customer(
        connections, vendor_store, contact={"last_name": f"Rossi{word}"}
    )
    merged = await build_customer(connections, vendor_store, contact={"last_name": f"Rossi{word}"})
    await merge(connections, merged, survivor)

    assert await found(client, f"rossi{word}") == [survivor]


async def test_a_contact_change_changes_what_search_finds(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    old, new = tag(), tag()
    cid = await build_customer(connections, vendor_store, contact={"last_name": f"Old{old}"})
    assert await found(client, f"old{old}") == [cid]

    body = await graphql(
        client,
        CONTACT,
        {"input": {"customerId": str(cid), "lastName": f"New{new}", "email": f"{new}@x.io"}},
    )
    assert body["data"]["updateCustomerContact"]["__typename"] == "UpdateCustomerContactSuccess"

    assert await found(client, f"old{old}") == []
    assert await found(client, f"new{new}") == [cid]
    assert await found(client, f"{new}@x") == [cid]
    assert await found(client, f"test.{cid}@") == []  # the email it had before


async def test_an_ingested_contact_change_changes_what_search_finds(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    new = tag()
    cid = await build_customer(connections, vendor_store)
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:test:crm",
        "type": "customer.contact_changed",
        "subject": str(cid),
        "time": "2026-11-22T09:30:00Z",
        "data": {"email": f"{new}@crm.example", "first_name": f"Ingested{new}"},
    }
    response = await client.post(
        "/events", json=event, headers=PUBLISHER | {"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 202, response.text

    assert await found(client, f"ingested{new}") == [cid]
    assert await found(client, f"{new}@crm") == [cid]
    assert await found(client, f"test.{cid}") == []


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"query": "a"}, "`query` must hold 2 to 200 characters"),
        ({"query": "   b  "}, "`query` must hold 2 to 200 characters"),
        ({"query": "a b c d e f g h i"}, "at most 8 words"),
        ({"query": "ada", "first": 101}, "`first` must be between 0 and 100"),
        ({"query": "ada", "after": "not-a-cursor"}, "`after` is not a cursor of customer search"),
        # An order page cursor is not a search cursor.
        ({"query": "ada", "after": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwiMSJd"}, "`after` is not"),
        # A name with a NUL (["s", "", "\u0000", 1]) is no name c360 holds, and PostgreSQL
        # cannot compare with it.
        ({"query": "ada", "after": "WyJzIiwgIiIsICJcdTAwMDAiLCAxXQ"}, "`after` is not"),
    ],
)
async def test_search_arguments_are_checked(
    client: httpx.AsyncClient, variables: dict[str, Any], message: str
) -> None:
    body = await graphql(client, SEARCH, variables)
    assert body["data"] == {"searchCustomers": None}
    assert error_code(body) == "BAD_USER_INPUT"
    assert message in body["errors"][0]["message"]


async def test_a_search_page_is_one_sql_round_trip(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    word = tag()
    for _ in range(3):
        await build_customer(connections, vendor_store, contact={"last_name": f"Page{word}"})

    before = connections.round_trips.snapshot()
    page = await search(client, f"page{word} test", first=2)
    spent = connections.round_trips.since(before)

    assert len(page["edges"]) == 2 and page["pageInfo"]["hasNextPage"] is True
    assert spent == trips(sql=1)


def cost(query: str) -> int:
    """The cost the limits measure for a document (read from a zero-budget refusal)."""
    document = parse(query)
    [operation] = document.definitions
    assert isinstance(operation, OperationDefinitionNode)
    error = check_cost(
        create_schema()._schema,
        document,
        operation,
        variables=None,
        budget=0,
        role="agent",
        page_default=20,
    ).error
    assert error is not None and error.extensions is not None
    measured: int = error.extensions["measured"]
    return measured


def test_search_is_priced_by_its_page_and_a_lookup_by_its_candidates() -> None:
    # A customer with its addresses costs 1 + (1 + 3 hinted addresses * 0) = 2.
    node = "customer { addresses { city } }"
    # searchCustomers = 1 + first * (edges 1 + 1 * node 2)
    search = '{ searchCustomers(query: "ad", first: 50) { edges { node { addresses { city } } } } }'
    assert cost(search) == 1 + 50 * 3
    assert cost(search.replace(", first: 50", "")) == 1 + 20 * 3
    # customerLookup = 1 + customer 2 + (candidates 1 + 5 hinted * customer 2)
    lookup = f'{{ customerLookup(email: "a@b.c") {{ {node} candidates {{ {node} }} }} }}'
    assert cost(lookup) == 1 + 2 + (1 + 5 * 2)


# --- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "scopes", "allowed"),
    [
        (Role.AGENT, [], True),
        (Role.ANALYST, [], True),
        (Role.ADMIN, [], True),
        (Role.SERVICE, ["customers:read"], True),
        (Role.SERVICE, ["orders:read"], False),
        (Role.CUSTOMER, [], False),
    ],
)
async def test_finding_customers_is_for_staff_and_services(
    client: httpx.AsyncClient,
    connections: Connections,
    vendor_store: VendorStore,
    role: Role,
    scopes: list[str],
    allowed: bool,
) -> None:
    word = tag()
    email = f"{word}@example.com"
    cid = await build_customer(
        connections, vendor_store, contact={"email": email, "last_name": f"Access{word}"}
    )
    subject = str(cid) if role is Role.CUSTOMER else None
    headers = bearer(role, subject=subject, scopes=scopes)
    query = """query($email: String, $q: String!) {
      customerLookup(email: $email) { customer { id } }
      searchCustomers(query: $q) { edges { node { id } } }
      __typename }"""

    body = await graphql(client, query, {"email": email, "q": f"access{word}"}, headers)

    if allowed:
        assert "errors" not in body, body["errors"]
        assert body["data"]["customerLookup"] == {"customer": {"id": str(cid)}}
        assert body["data"]["searchCustomers"] == {"edges": [{"node": {"id": str(cid)}}]}
    else:
        # A refusal nulls only the refused fields.
        assert body["data"] == {
            "customerLookup": None,
            "searchCustomers": None,
            "__typename": "Query",
        }
        assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
        assert {tuple(e["path"]) for e in body["errors"]} == {
            ("customerLookup",),
            ("searchCustomers",),
        }


async def test_analysts_find_customers_but_see_their_contact_data_masked(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    email = f"mask{tag()}@example.com"
    await build_customer(connections, vendor_store, contact={"email": email})
    body = await graphql(
        client,
        "query($e: String) { customerLookup(email: $e) { customer { email } } }",
        {"e": email},
        bearer(Role.ANALYST),
    )
    assert "errors" not in body, body["errors"]
    assert body["data"]["customerLookup"]["customer"]["email"] == "m***@example.com"


async def test_who_may_not_read_emails_and_phones_searches_names_only(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    name, mailbox, phone = tag(), tag(), new_phone()
    cid = await build_customer(
        connections,
        vendor_store,
        contact={"first_name": f"Nia{name}", "email": f"{mailbox}@example.com", "phone": phone},
    )
    analyst = bearer(Role.ANALYST)
    service = bearer(Role.SERVICE, scopes=["customers:read"])
    pii_service = bearer(Role.SERVICE, scopes=["customers:read", "pii:read"])

    async def ask(query: str, headers: dict[str, str]) -> dict[str, Any]:
        return await graphql(client, SEARCH, {"query": query}, headers)

    def ids(body: dict[str, Any]) -> list[int]:
        assert "errors" not in body, body["errors"]
        return [int(e["node"]["id"]) for e in body["data"]["searchCustomers"]["edges"]]

    for headers in (analyst, service, pii_service):
        assert ids(await ask(f"nia{name}", headers)) == [cid]
    # A word that starts only the email finds the customer for whoever reads emails in
    # clear, and nobody for the others: a letter at a time, it would spell the email out.
    assert ids(await ask(mailbox[:4], pii_service)) == [cid]
    assert ids(await ask(mailbox, analyst)) == ids(await ask(mailbox, service)) == []
    # (Whole numbers: other tests' customers share this one's prefixes.)
    for query in (f"{mailbox}@ex", phone, f"nia{name} 0{phone[3:]}"):
        assert ids(await ask(query, pii_service)) == [cid], query
        for headers in (analyst, service):
            body = await ask(query, headers)
            assert body["data"] == {"searchCustomers": None}
            assert error_code(body) == "FORBIDDEN"
