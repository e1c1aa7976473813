"""Who sees what: each role by each PII field, consent-hidden marketing data, mutations, audit."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from api.connections import Connections
from domain.principal import Role, Scope
from sources.sql import models
from sources.thirdparty.simulator import VendorStore
from tests.auth import bearer
from tests.builders import T0, build_customer
from tests.queries import graphql

PII = """query($id: ID!) { customer(id: $id) {
  id firstName email phone birthDate
  addresses { line1 line2 city }
  profile { identities { type value } }
  loyalty { tier memberNumber }
} }"""
BIRTH = dt.date(1987, 4, 12)


async def _customer(connections: Connections, vendors: VendorStore, **profile: Any) -> int:
    cid = await build_customer(connections, vendors, orders=0, interactions=0, **profile)
    async with connections.engine.begin() as sql:
        await sql.execute(
            update(models.Customer.__table__)
            .where(models.Customer.__table__.c.id == cid)
            .values(birth_date=BIRTH, phone="+447700900321")
        )
        await sql.execute(
            update(models.Address.__table__)
            .where(models.Address.__table__.c.customer_id == cid)
            .values(line2="Flat 2B")
        )
    return cid


async def _ask(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    return await graphql(client, query, variables, headers)


def _forbidden_paths(body: dict[str, Any]) -> set[str]:
    return {
        ".".join(str(p) for p in e["path"])
        for e in body.get("errors", [])
        if e["extensions"]["code"] == "FORBIDDEN"
    }


CLEAR = "clear"
MASKED = "masked"
FORBIDDEN = "forbidden"

ROLES: dict[str, tuple[dict[str, str] | None, str]] = {
    # name: (headers, or None for the customer itself, and what PII looks like)
    "agent": (bearer(Role.AGENT), CLEAR),
    "admin": (bearer(Role.ADMIN), CLEAR),
    "analyst": (bearer(Role.ANALYST), MASKED),
    "service with pii:read": (
        bearer(
            Role.SERVICE,
            scopes=[Scope.CUSTOMERS, Scope.PROFILE, Scope.LOYALTY, Scope.PII],
        ),
        CLEAR,
    ),
    "service without pii:read": (
        bearer(Role.SERVICE, scopes=[Scope.CUSTOMERS, Scope.PROFILE, Scope.LOYALTY]),
        FORBIDDEN,
    ),
    "customer (itself)": (None, CLEAR),
}


@pytest.mark.parametrize("role", list(ROLES))
async def test_each_role_sees_each_pii_field_clear_masked_or_forbidden(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore, role: str
) -> None:
    cid = await _customer(connections, vendor_store)
    headers, view = ROLES[role]
    headers = headers or bearer(Role.CUSTOMER, subject=str(cid))
    body = await _ask(client, headers, PII, {"id": str(cid)})
    customer = body["data"]["customer"]
    # What is not personal data answers for every role.
    assert customer["firstName"] == "Test"
    assert customer["addresses"][0]["city"] == "London"
    assert customer["profile"]["identities"][0]["type"] == "CRM_ID"
    assert customer["loyalty"]["tier"] == "GOLD"
    fields = {
        "customer.email": customer["email"],
        "customer.phone": customer["phone"],
        "customer.birthDate": customer["birthDate"],
        "customer.addresses.0.line1": customer["addresses"][0]["line1"],
        "customer.addresses.0.line2": customer["addresses"][0]["line2"],
        "customer.profile.identities.0.value": customer["profile"]["identities"][0]["value"],
        # The member number is the LOYALTY_NUMBER identity by another name.
        "customer.loyalty.memberNumber": customer["loyalty"]["memberNumber"],
    }
    if view == CLEAR:
        assert "errors" not in body
        assert fields == {
            "customer.email": f"test.{cid}@example.com",
            "customer.phone": "+447700900321",
            "customer.birthDate": "1987-04-12",
            "customer.addresses.0.line1": "1 Test Street",
            "customer.addresses.0.line2": "Flat 2B",
            "customer.profile.identities.0.value": f"CRM-{cid}",
            "customer.loyalty.memberNumber": f"LOY{cid}",
        }
    elif view == MASKED:
        assert "errors" not in body
        crm = f"CRM-{cid}"
        assert fields == {
            "customer.email": "t***@example.com",
            "customer.phone": "+44*******321",
            "customer.birthDate": None,
            "customer.addresses.0.line1": "* T*** S*****",
            "customer.addresses.0.line2": "F*** 2*",
            "customer.profile.identities.0.value": crm[:2] + "*" * (len(crm) - 4) + crm[-2:],
            "customer.loyalty.memberNumber": f"LO{'*' * (len(str(cid)) - 1)}{str(cid)[-2:]}",
        }
    else:
        assert set(fields.values()) == {None}
        assert _forbidden_paths(body) == set(fields)


async def test_a_customer_sees_only_itself(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    me = await _customer(connections, vendor_store)
    other = await _customer(connections, vendor_store)
    body = await _ask(client, bearer(Role.CUSTOMER, subject=str(me)), PII, {"id": str(other)})
    assert body["data"]["customer"] is None
    assert _forbidden_paths(body) == {"customer"}


async def test_a_service_key_sees_only_the_areas_of_its_scopes(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store, orders=1, interactions=1)
    query = """query($id: ID!) { customer(id: $id) { id
      orders { totalCount } profile { segments } loyalty { tier } tickets { id }
      timeline { edges { cursor } } } }"""
    headers = bearer(Role.SERVICE, scopes=[Scope.CUSTOMERS.value, Scope.LOYALTY.value])
    body = await _ask(client, headers, query, {"id": str(cid)})
    customer = body["data"]["customer"]
    assert customer["id"] == str(cid)
    assert customer["loyalty"] == {"tier": "GOLD"}
    assert _forbidden_paths(body) == {
        "customer.orders",
        "customer.profile",
        "customer.tickets",
        "customer.timeline",
    }
    messages = {e["message"] for e in body["errors"]}
    assert "Not allowed: reading this needs the `orders:read` scope." in messages
    # Without customers:read, not even the customer.
    body = await _ask(client, bearer(Role.SERVICE, scopes=[]), query, {"id": str(cid)})
    assert body["data"]["customer"] is None
    assert _forbidden_paths(body) == {"customer"}


async def test_withdrawn_marketing_consent_hides_traits_and_segments_but_from_admin(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    profile = {
        "traits": {"favouriteCategory": "shoes"},
        "segments": ["newsletter", "vip-service"],
        "preferences": {"channels": ["EMAIL"], "language": "en"},
        "consents": [
            {"channel": "EMAIL", "granted": False, "updated_at": T0},
            {"channel": "SMS", "granted": False, "updated_at": T0},
        ],
        "identities": [],
        "computed": {"lifetime_value_minor": 0, "currency": "EUR"},
    }
    cid = await build_customer(connections, vendor_store, orders=0, profile=profile)
    query = "query($id: ID!) { customer(id: $id) { profile { traits { key } segments } } }"
    for role in (Role.AGENT, Role.ANALYST, Role.CUSTOMER):
        subject = str(cid) if role is Role.CUSTOMER else None
        body = await _ask(client, bearer(role, subject=subject), query, {"id": str(cid)})
        assert body["data"]["customer"]["profile"] == {"traits": [], "segments": ["vip-service"]}
    body = await _ask(client, bearer(Role.ADMIN), query, {"id": str(cid)})
    assert body["data"]["customer"]["profile"] == {
        "traits": [{"key": "favouriteCategory"}],
        "segments": ["newsletter", "vip-service"],
    }
    # Granting one marketing channel again shows them to everyone.
    consent = """mutation($input: SetConsentInput!) { setConsent(input: $input) {
      __typename } }"""
    granted = {"input": {"customerId": str(cid), "channel": "SMS", "granted": True}}
    assert (await _ask(client, bearer(Role.AGENT), consent, granted))["data"]["setConsent"] == {
        "__typename": "SetConsentSuccess"
    }
    body = await _ask(client, bearer(Role.ANALYST), query, {"id": str(cid)})
    assert body["data"]["customer"]["profile"]["segments"] == ["newsletter", "vip-service"]


CONTACT = """mutation($input: UpdateCustomerContactInput!) {
  updateCustomerContact(input: $input) { __typename } }"""
CONSENT = """mutation($input: SetConsentInput!) { setConsent(input: $input) { __typename } }"""
ORDER = """mutation($input: UpdateOrderStatusInput!) { updateOrderStatus(input: $input) {
  __typename } }"""


async def test_mutations_by_role(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    me = await build_customer(connections, vendor_store, orders=1)
    other = await build_customer(connections, vendor_store, orders=0)
    consent = {"input": {"customerId": str(me), "channel": "PUSH", "granted": True}}
    contact = {"input": {"customerId": str(me), "firstName": "Renamed"}}
    order = {"input": {"orderId": str(me * 1000), "status": "DELIVERED"}}

    customer = bearer(Role.CUSTOMER, subject=str(me))
    own_consent = await _ask(client, customer, CONSENT, consent)
    assert own_consent["data"]["setConsent"] == {"__typename": "SetConsentSuccess"}
    own_contact = await _ask(client, customer, CONTACT, contact)
    assert own_contact["data"]["updateCustomerContact"] == {
        "__typename": "UpdateCustomerContactSuccess"
    }
    for headers, query, variables in (
        (customer, ORDER, order),  # not a contact or consent change
        (customer, CONSENT, {"input": consent["input"] | {"customerId": str(other)}}),
        (bearer(Role.ANALYST), CONTACT, contact),
        (bearer(Role.SERVICE, scopes=[s.value for s in Scope]), CONSENT, consent),
    ):
        body = await _ask(client, headers, query, variables)
        (name,) = body["data"]
        assert body["data"][name] is None
        assert _forbidden_paths(body) == {name}
    body = await _ask(client, bearer(Role.AGENT), ORDER, order)
    assert body["data"]["updateOrderStatus"] == {"__typename": "UpdateOrderStatusSuccess"}


AUDIT = """query($id: ID!) { auditLog(customerId: $id) { edges { node {
  principal role requestId customerId fields } } } }"""


async def test_the_audit_log_records_exactly_the_clear_text_reads(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await _customer(connections, vendor_store)
    variables = {"id": str(cid)}
    # An analyst's masked reads and a query without PII are not recorded.
    await _ask(client, bearer(Role.ANALYST), PII, variables)
    await _ask(
        client, bearer(Role.AGENT), "query($id: ID!) { customer(id: $id) { id } }", variables
    )
    response = await client.post(
        "/graphql",
        json={"query": PII, "variables": variables},
        headers=bearer(Role.AGENT, subject="agent-7") | {"x-request-id": "req-audit-1"},
    )
    assert response.headers["x-request-id"] == "req-audit-1"
    await _ask(
        client,
        bearer(Role.AGENT, subject="agent-8"),
        "query($id: ID!) { customer(id: $id) { phone } }",
        variables,
    )
    await connections.audit.flush()

    body = await _ask(client, bearer(Role.ADMIN), AUDIT, variables)
    entries = [edge["node"] for edge in body["data"]["auditLog"]["edges"]]
    assert entries == [
        {
            "principal": "agent-8",
            "role": "agent",
            "requestId": entries[0]["requestId"],
            "customerId": str(cid),
            "fields": ["Customer.phone"],
        },
        {
            "principal": "agent-7",
            "role": "agent",
            "requestId": "req-audit-1",
            "customerId": str(cid),
            "fields": [
                "Address.line1",
                "Address.line2",
                "Customer.birthDate",
                "Customer.email",
                "Customer.phone",
                "Identity.value",
                "LoyaltyMembership.memberNumber",
            ],
        },
    ]
    # A request id chosen by the client cannot fold two principals' reads into one entry.
    for subject in ("agent-9", "agent-10"):
        await client.post(
            "/graphql",
            json={
                "query": "query($id: ID!) { customer(id: $id) { email } }",
                "variables": variables,
            },
            headers=bearer(Role.AGENT, subject=subject) | {"x-request-id": "shared-id"},
        )
    await connections.audit.flush()
    body = await _ask(client, bearer(Role.ADMIN), AUDIT, variables)
    shared = [
        e["node"]
        for e in body["data"]["auditLog"]["edges"]
        if e["node"]["requestId"] == "shared-id"
    ]
    assert sorted(e["principal"] for e in shared) == ["agent-10", "agent-9"]
    # Only admin may read it.
    body = await _ask(client, bearer(Role.AGENT), AUDIT, variables)
    assert body["data"]["auditLog"] is None
    assert _forbidden_paths(body) == {"auditLog"}
