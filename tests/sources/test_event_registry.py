"""The schema registry: every schema loads, a valid event of each type passes, and each kind of
invalid envelope or data is refused with a reason that names what is wrong."""

from __future__ import annotations

import copy
import json
import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from resolvers.enums import AddressKind, Channel, InteractionType, OrderStatus, TicketStatus
from sources.events.envelope import Event
from sources.events.registry import SchemaRegistry, SchemaRegistryError, is_rfc3339

EXAMPLES: dict[str, dict[str, Any]] = {
    "customer.contact_changed": {
        "email": "ada@example.com",
        "phone": "+447700900123",
        "first_name": "Ada",
    },
    "customer.address_changed": {
        "kind": "SHIPPING",
        "line1": "1 High Street",
        "city": "London",
        "postal_code": "EC1A 1BB",
        "country": "GB",
    },
    "order.placed": {
        "order_id": "900001",
        "number": "ORD-00900001",
        "channel": "WEB",
        "currency": "EUR",
        "total": "259.80",
        "lines": [{"sku": "SKU-00001", "quantity": 2, "unit_price": "129.90"}],
        "placed_at": "2026-11-22T09:30:00Z",
    },
    "order.status_changed": {
        "number": "ORD-00000042",
        "status": "SHIPPED",
        "tracking_number": "1Z9",
    },
    "cart.abandoned": {
        "cart_id": "cart-77",
        "items": [{"sku": "SKU-00002", "quantity": 1, "unit_price": "19.99"}],
        "value": "19.99",
        "currency": "EUR",
    },
    "interaction.recorded": {
        "type": "PRODUCT_VIEW",
        "channel": "MOBILE",
        "occurred_at": "2026-11-22T09:30:00.250+01:00",
        "attributes": {"path": "/p/SKU-00002"},
    },
    "ticket.status_changed": {
        "ticket_id": "T-0000042",
        "status": "PENDING",
        "assignee": "roadside-tech-17",
        "eta": "2026-11-22T10:15:00Z",
        "note": "Technician on the way",
    },
    "consent.changed": {"channel": "SMS", "granted": False},
    "customer.merged": {
        "merge_id": "12",
        "survivor_id": "42",
        "merged_id": "43",
        "merged_by": "agent-ada",
        "moved": {"orders": 2, "interactions": 40, "tickets": 1, "identities": 3},
    },
    "customer.unmerged": {
        "merge_id": "12",
        "survivor_id": "42",
        "merged_id": "43",
        "unmerged_by": "agent-ada",
        "returned": {"orders": 2, "interactions": 40, "tickets": 1, "identities": 3},
    },
}


def event(type: str = "consent.changed", **attributes: Any) -> dict[str, Any]:
    """A valid structured event of `type` (its example data); attributes override."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"evt-{type}",
        "source": "urn:test:registry",
        "type": type,
        "subject": "42",
        "time": "2026-11-22T09:30:00Z",
        "data": copy.deepcopy(EXAMPLES.get(type, {})),
    }
    body.update(attributes)
    return body


def without(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != name}


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry()


def test_every_schema_loads_with_its_dataschema(registry: SchemaRegistry) -> None:
    assert registry.types == sorted(EXAMPLES)
    for type in registry.types:
        assert registry.current_version(type) == 1
        uri = f"urn:c360:schema:{type}:v1"
        assert registry.dataschema(type) == uri
        schema = registry.schema(type)
        assert schema["$id"] == uri
        assert schema["additionalProperties"] is False


def _enums(node: Any) -> list[list[str]]:
    if isinstance(node, dict):
        found = [node["enum"]] if "enum" in node else []
        return found + [e for value in node.values() for e in _enums(value)]
    if isinstance(node, list):
        return [e for value in node for e in _enums(value)]
    return []


@pytest.mark.parametrize(
    ("type", "field", "enum"),
    [
        ("customer.address_changed", "kind", AddressKind),
        ("order.placed", "channel", Channel),
        ("order.status_changed", "status", OrderStatus),
        ("interaction.recorded", "type", InteractionType),
        ("interaction.recorded", "channel", Channel),
        ("ticket.status_changed", "status", TicketStatus),
    ],
)
def test_enumerations_match_the_graph(
    registry: SchemaRegistry, type: str, field: str, enum: type[Enum]
) -> None:
    allowed = registry.schema(type)["properties"][field]["enum"]
    assert allowed == [member.value for member in enum]


def test_consent_channels_are_channels_of_the_graph(registry: SchemaRegistry) -> None:
    allowed = registry.schema("consent.changed")["properties"]["channel"]["enum"]
    assert allowed == ["EMAIL", "SMS", "PHONE", "PUSH", "POST"]
    assert set(allowed) <= {member.value for member in Channel}


@pytest.mark.parametrize("type", sorted(EXAMPLES))
def test_a_valid_event_of_each_type_validates(registry: SchemaRegistry, type: str) -> None:
    body = event(type, dataschema=registry.dataschema(type), traceparent="00-abc-01")
    assert registry.validate(body) == []
    parsed = Event.from_json(body)
    assert (parsed.type, parsed.subject, parsed.data) == (type, "42", EXAMPLES[type])
    assert parsed.time.utcoffset() is not None
    assert parsed.extensions == {"traceparent": "00-abc-01"}


def test_optional_fields_may_be_left_out(registry: SchemaRegistry) -> None:
    assert not registry.validate(
        event("customer.contact_changed", data={"phone": "+4915112345678"})
    )
    assert not registry.validate(event("customer.contact_changed", data={"email": "a@b.example"}))
    assert not registry.validate(
        event("order.status_changed", data={"order_id": "7", "status": "PAID"})
    )
    assert not registry.validate(
        event("ticket.status_changed", data={"ticket_id": "T-1", "status": "RESOLVED"})
    )


INVALID: list[tuple[str, dict[str, Any] | list[Any], str]] = [
    ("not an object", [event()], "an event must be a JSON object, not an array"),
    ("old specversion", event(specversion="0.3"), 'specversion must be "1.0" (got "0.3")'),
    ("no specversion", without(event(), "specversion"), 'specversion must be "1.0"'),
    ("no id", without(event(), "id"), "id is required"),
    ("empty id", event(id=""), 'id must be a non-empty string (got "")'),
    ("numeric id", event(id=7), "id must be a non-empty string (got 7)"),
    ("long id", event(id="e" * 65), "id must be at most 64 characters (got 65)"),
    ("no source", without(event(), "source"), "source is required"),
    ("no subject", without(event(), "subject"), "subject is required"),
    (
        "subject not digits",
        event(subject="cust-9"),
        'subject must be the customer id, a string of digits (got "cust-9")',
    ),
    (
        "subject a number",
        event(subject=42),
        "subject must be the customer id, a string of digits (got 42)",
    ),
    ("no time", without(event(), "time"), "time is required"),
    (
        "time without offset",
        event(time="2026-11-22T09:30:00"),
        "time must be an RFC 3339 timestamp",
    ),
    ("time not a date", event(time="2026-02-30T09:30:00Z"), "time must be an RFC 3339 timestamp"),
    (
        "unknown type",
        event(type="customer.deleted"),
        'type "customer.deleted" is not a registered event type',
    ),
    (
        "unknown dataschema",
        event(dataschema="urn:c360:schema:consent.changed:v2"),
        'dataschema "urn:c360:schema:consent.changed:v2" is not a known version of consent.changed',
    ),
    (
        "xml data",
        event(datacontenttype="application/xml"),
        'datacontenttype must be application/json (got "application/xml")',
    ),
    (
        "bad extension name",
        event(**{"Trace-Id": "x"}),
        'attribute "Trace-Id" is not a valid extension name',
    ),
    ("binary data", without(event(data_base64="e30="), "data"), "data_base64 is not accepted"),
    ("no data", without(event(), "data"), "data is required"),
    ("data not an object", event(data="granted"), "data must be a JSON object, not a string"),
    ("missing field", event(data={"channel": "SMS"}), "data.granted is required"),
    (
        "unknown field",
        event(data={"channel": "SMS", "granted": True, "why": "x"}),
        "data.why is not a known field",
    ),
    (
        "wrong type",
        event(data={"channel": "SMS", "granted": "yes"}),
        "data.granted: must be a boolean, not a string",
    ),
    (
        "not in enum",
        event(data={"channel": "FAX", "granted": True}),
        'data.channel: "FAX" is not one of EMAIL, SMS, PHONE, PUSH, POST',
    ),
    (
        "neither email nor phone",
        event("customer.contact_changed", data={"first_name": "Ada"}),
        "data: needs email or phone",
    ),
    (
        "bad phone",
        event("customer.contact_changed", data={"phone": "0770 090"}),
        'data.phone: "0770 090" is not valid: an E.164 phone number',
    ),
    (
        "unknown country",
        event(
            "customer.address_changed",
            data={**EXAMPLES["customer.address_changed"], "country": "UK"},
        ),
        'data.country: "UK" is not one of the 249 allowed values',
    ),
    (
        "float total",
        event("order.placed", data={**EXAMPLES["order.placed"], "total": 259.8}),
        "data.total: must be a string, not a number",
    ),
    (
        # Finer than the currency's own unit (EUR's three decimals) is the applier's refusal.
        "four decimals",
        event("order.placed", data={**EXAMPLES["order.placed"], "total": "1.0005"}),
        'data.total: "1.0005" is not valid: an amount as a decimal string',
    ),
    (
        "no lines",
        event("order.placed", data={**EXAMPLES["order.placed"], "lines": []}),
        "data.lines: must hold at least 1 items",
    ),
    (
        "zero quantity",
        event(
            "order.placed",
            data={
                **EXAMPLES["order.placed"],
                "lines": [{"sku": "S", "quantity": 0, "unit_price": "1"}],
            },
        ),
        "data.lines[0].quantity: 0 is less than the minimum of 1",
    ),
    (
        "placed_at not a timestamp",
        event("order.placed", data={**EXAMPLES["order.placed"], "placed_at": "yesterday"}),
        'data.placed_at: "yesterday" is not an RFC 3339 timestamp',
    ),
    (
        "order named by neither id nor number",
        event("order.status_changed", data={"status": "SHIPPED"}),
        "data: needs order_id or number",
    ),
    (
        "unknown order status",
        event("order.status_changed", data={"order_id": "1", "status": "LOST"}),
        'data.status: "LOST" is not one of PLACED, PAID, FULFILLING',
    ),
    (
        "attribute not a string",
        event(
            "interaction.recorded",
            data={**EXAMPLES["interaction.recorded"], "attributes": {"count": 3}},
        ),
        "data.attributes.count: must be a string, not a number",
    ),
    (
        "eta not a timestamp",
        event("ticket.status_changed", data={"ticket_id": "T-1", "status": "OPEN", "eta": "soon"}),
        'data.eta: "soon" is not an RFC 3339 timestamp',
    ),
]


@pytest.mark.parametrize(
    ("body", "reason"), [(b, r) for _, b, r in INVALID], ids=[n for n, _, _ in INVALID]
)
def test_an_invalid_event_is_refused_with_its_reason(
    registry: SchemaRegistry, body: Any, reason: str
) -> None:
    reasons = registry.validate(body)
    assert any(r.startswith(reason) for r in reasons), reasons


def test_every_reason_is_given_at_once(registry: SchemaRegistry) -> None:
    body = event("order.placed", id="", subject="x", data={**EXAMPLES["order.placed"], "total": 1})
    body["data"]["lines"][0]["quantity"] = -1
    reasons = registry.validate(body)
    assert len(reasons) == 4, reasons
    assert reasons[2:] == [
        "data.lines[0].quantity: -1 is less than the minimum of 1",
        "data.total: must be a string, not a number",
    ]


def test_long_values_are_cut_short_in_reasons(registry: SchemaRegistry) -> None:
    reasons = registry.validate(event(type="x" * 500, id="evt-1"))
    assert reasons == ['type "' + "x" * 58 + "… is not a registered event type"]
    assert len(reasons[0]) < 120


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2026-11-22T09:30:00Z", True),
        ("2026-11-22T09:30:00.123456789-05:00", True),
        ("2026-11-22t09:30:00z", False),
        ("2026-11-22 09:30:00Z", False),
        ("2026-11-22T09:30:00", False),
        ("2026-11-22", False),
        ("2026-13-01T00:00:00Z", False),
        (20261122, True),
    ],
)
def test_rfc3339(value: object, valid: bool) -> None:
    assert is_rfc3339(value) is valid


def test_a_broken_schema_stops_the_registry_from_loading(tmp_path: Path) -> None:
    folder = tmp_path / "thing.happened"
    folder.mkdir()
    (folder / "v1.json").write_text(json.dumps({"type": "nonsense"}), encoding="utf-8")
    with pytest.raises(SchemaRegistryError, match=re.escape("thing.happened/v1.json")):
        SchemaRegistry(tmp_path)


def test_a_schema_must_carry_its_own_uri(tmp_path: Path) -> None:
    folder = tmp_path / "thing.happened"
    folder.mkdir()
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:c360:schema:other.thing:v1",
        "type": "object",
    }
    (folder / "v1.json").write_text(json.dumps(schema), encoding="utf-8")
    with pytest.raises(SchemaRegistryError, match=re.escape("urn:c360:schema:thing.happened:v1")):
        SchemaRegistry(tmp_path)


def test_an_older_version_named_in_dataschema_is_used(tmp_path: Path) -> None:
    folder = tmp_path / "thing.happened"
    folder.mkdir()
    for version, required in ((1, ["a"]), (2, ["b"])):
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"urn:c360:schema:thing.happened:v{version}",
            "type": "object",
            "required": required,
        }
        (folder / f"v{version}.json").write_text(json.dumps(schema), encoding="utf-8")
    registry = SchemaRegistry(tmp_path)
    assert registry.current_version("thing.happened") == 2
    assert registry.versions("thing.happened") == [1, 2]
    old = event("thing.happened", data={"a": 1}, dataschema="urn:c360:schema:thing.happened:v1")
    assert registry.validate(old) == []
    assert registry.validate(without(old, "dataschema")) == ["data.b is required"]
