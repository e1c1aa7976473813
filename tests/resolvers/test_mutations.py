"""Mutations: validated input, typed errors, and reads that see the change at once."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from api.connections import Connections
from sources.sql import models
from sources.thirdparty.simulator import VendorStore
from tests.builders import build_customer
from tests.queries import graphql

CONTACT = """mutation($input: UpdateCustomerContactInput!) { updateCustomerContact(input: $input) {
  __typename
  ... on UpdateCustomerContactSuccess { eventId customer { id email phone firstName } }
  ... on UpdateCustomerContactError { code message field } } }"""

ORDER = """mutation($input: UpdateOrderStatusInput!) { updateOrderStatus(input: $input) {
  __typename
  ... on UpdateOrderStatusSuccess { eventId order { id status trackingNumber } }
  ... on UpdateOrderStatusError { code message field } } }"""

CONSENT = """mutation($input: SetConsentInput!) { setConsent(input: $input) {
  __typename
  ... on SetConsentSuccess { eventId customer { profile { consents { channel granted } } } }
  ... on SetConsentError { code message field } } }"""


async def run(client: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = await graphql(client, query, variables)
    assert "errors" not in body, body
    return body["data"]


async def test_contact_change_is_saved_and_read_back(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    data = await run(
        client,
        CONTACT,
        {
            "input": {
                "customerId": str(cid),
                "email": "  New.Address@Example.COM ",
                "phone": "+44 20 7183 8750",
            }
        },
    )
    result = data["updateCustomerContact"]
    assert result["__typename"] == "UpdateCustomerContactSuccess"
    assert result["customer"]["email"] == "new.address@example.com"
    assert result["customer"]["phone"] == "+442071838750"
    view = await run(client, f'{{ customer(id: "{cid}") {{ email }} }}', {})
    assert view["customer"]["email"] == "new.address@example.com"
    async with connections.engine.connect() as sql:
        outbox = (
            await sql.execute(
                select(models.OutboxEvent.type, models.OutboxEvent.subject).where(
                    models.OutboxEvent.event_id == result["eventId"]
                )
            )
        ).one()
    assert tuple(outbox) == ("customer.contact_changed", str(cid))


async def test_contact_change_errors_say_what_to_fix(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    other = await build_customer(connections, vendor_store)
    cases = [
        ({"customerId": str(cid), "email": "not-an-email"}, "INVALID_EMAIL", "email"),
        ({"customerId": str(cid), "phone": "0207 183 8750"}, "INVALID_PHONE", "phone"),
        ({"customerId": str(cid), "email": f"test.{other}@example.com"}, "EMAIL_TAKEN", "email"),
        ({"customerId": "999999999", "email": "a@b.co"}, "CUSTOMER_NOT_FOUND", "customerId"),
        ({"customerId": str(cid)}, "NOTHING_TO_CHANGE", None),
    ]
    for given, code, field in cases:
        result = (await run(client, CONTACT, {"input": given}))["updateCustomerContact"]
        assert result["__typename"] == "UpdateCustomerContactError"
        assert (result["code"], result["field"]) == (code, field), given
        assert result["message"]


async def test_order_status_follows_legal_transitions_only(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store, orders=1)
    order_id = str(cid * 1000)  # the builder's numbering; the order is SHIPPED
    illegal = await run(client, ORDER, {"input": {"orderId": order_id, "status": "PAID"}})
    error = illegal["updateOrderStatus"]
    assert (error["code"], error["field"]) == ("ILLEGAL_TRANSITION", "status")
    assert "SHIPPED cannot become PAID" in error["message"]
    done = await run(client, ORDER, {"input": {"orderId": order_id, "status": "DELIVERED"}})
    assert done["updateOrderStatus"]["order"]["status"] == "DELIVERED"
    missing = await run(client, ORDER, {"input": {"orderId": "424242424", "status": "PAID"}})
    assert missing["updateOrderStatus"]["code"] == "ORDER_NOT_FOUND"


async def test_mutations_are_refused_over_get(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql",
        params={
            "query": 'mutation { setConsent(input: {customerId: "1", '
            "channel: SMS, granted: true}) { __typename } }"
        },
        headers={"accept": "application/graphql-response+json"},
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_consent_change_updates_the_profile(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    data = await run(
        client, CONSENT, {"input": {"customerId": str(cid), "channel": "SMS", "granted": True}}
    )
    consents = data["setConsent"]["customer"]["profile"]["consents"]
    assert {"channel": "SMS", "granted": True} in consents
    assert {"channel": "EMAIL", "granted": True} in consents
    missing = await run(
        client, CONSENT, {"input": {"customerId": "99999999", "channel": "SMS", "granted": False}}
    )
    assert missing["setConsent"]["code"] == "CUSTOMER_NOT_FOUND"


ADDRESS = """mutation($input: SetAddressInput!) { setAddress(input: $input) { __typename
  ... on AddressSuccess { customer { addresses { kind city country } } }
  ... on AddressError { code field } } }"""
REMOVE = """mutation($id: ID!, $kind: AddressKind!) { removeAddress(customerId: $id, kind: $kind) {
  __typename ... on AddressSuccess { customer { addresses { kind } } }
  ... on AddressError { code field } } }"""


async def test_addresses_are_set_replaced_and_removed(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    address = {
        "customerId": str(cid),
        "kind": "BILLING",
        "line1": "2 Quay",
        "city": "Cork",
        "postalCode": "T12",
        "country": "ie",
    }
    added = (await run(client, ADDRESS, {"input": address}))["setAddress"]
    assert {"kind": "BILLING", "city": "Cork", "country": "IE"} in added["customer"]["addresses"]
    moved = (await run(client, ADDRESS, {"input": {**address, "city": "Galway"}}))["setAddress"]
    billing = [a for a in moved["customer"]["addresses"] if a["kind"] == "BILLING"]
    assert billing == [{"kind": "BILLING", "city": "Galway", "country": "IE"}]
    bad = (await run(client, ADDRESS, {"input": {**address, "country": "Ireland"}}))["setAddress"]
    assert (bad["code"], bad["field"]) == ("INVALID_ADDRESS", "country")
    removed = (await run(client, REMOVE, {"id": str(cid), "kind": "BILLING"}))["removeAddress"]
    assert {"kind": "BILLING"} not in removed["customer"]["addresses"]
    again = (await run(client, REMOVE, {"id": str(cid), "kind": "BILLING"}))["removeAddress"]
    assert again["code"] == "ADDRESS_NOT_FOUND"


async def test_interactions_and_tickets_from_the_contact_center(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    recorded = await run(
        client,
        """mutation($input: RecordInteractionInput!) {
        recordInteraction(input: $input) { __typename } }""",
        {
            "input": {
                "customerId": str(cid),
                "type": "CALL",
                "channel": "CONTACT_CENTER",
                "occurredAt": "2026-11-22T08:00:00+00:00",
                "attributes": [{"key": "reason", "value": "delivery"}],
            }
        },
    )
    assert recorded["recordInteraction"]["__typename"] == "RecordInteractionSuccess"
    opened = (
        await run(
            client,
            """mutation($input: OpenTicketInput!) { openTicket(input: $input) {
        __typename ... on TicketSuccess { ticketId } } }""",
            {
                "input": {
                    "customerId": str(cid),
                    "subject": "Boiler broken",
                    "priority": "URGENT",
                    "channel": "FIELD_SERVICE",
                }
            },
        )
    )["openTicket"]
    ticket_id = opened["ticketId"]
    change = """mutation($input: ChangeTicketStatusInput!) { changeTicketStatus(input: $input) {
        __typename ... on TicketError { code } } }"""
    assigned = await run(
        client,
        change,
        {
            "input": {
                "ticketId": ticket_id,
                "status": "PENDING",
                "assignee": "tech-9",
                "eta": "2026-11-22T11:00:00+00:00",
                "note": "technician on the way",
            }
        },
    )
    assert assigned["changeTicketStatus"]["__typename"] == "TicketSuccess"
    missing = await run(client, change, {"input": {"ticketId": "T-NOPE", "status": "RESOLVED"}})
    assert missing["changeTicketStatus"]["code"] == "TICKET_NOT_FOUND"
    customer = await run(
        client,
        f"""{{ customer(id: "{cid}") {{
        timeline(first: 1, types: [CALL]) {{ edges {{ node {{ attributes {{ key value }} }} }} }}
        tickets(status: PENDING) {{ id subject priority assignee eta history {{ status note }} }}
        }} }}""",
        {},
    )
    node = customer["customer"]["timeline"]["edges"][0]["node"]
    assert node["attributes"] == [{"key": "reason", "value": "delivery"}]
    [ticket] = customer["customer"]["tickets"]
    assert ticket["id"] == ticket_id and ticket["priority"] == "URGENT"
    assert ticket["assignee"] == "tech-9" and ticket["eta"].startswith("2026-11-22T11:00")
    assert [h["status"] for h in ticket["history"]] == ["OPEN", "PENDING"]
