"""Every enumerated value c360 knows is declared once (`domain.vocabulary`): the graph's
enumerations, the event schemas' enums, the write model's checks and the seed data hold to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from domain import vocabulary as v
from resolvers import enums
from sources.seed import generator

SCHEMAS = Path(__file__).parents[2] / "sources" / "events" / "schemas"

GRAPH: dict[type[enums.Stored], tuple[str, ...]] = {
    enums.CustomerStatus: v.CUSTOMER_STATUSES,
    enums.AddressKind: v.ADDRESS_KINDS,
    enums.OrderStatus: v.ORDER_STATUSES,
    enums.Channel: v.CHANNELS,
    enums.InteractionType: v.INTERACTION_TYPES,
    enums.TicketStatus: v.TICKET_STATUSES,
    enums.TicketPriority: v.TICKET_PRIORITIES,
    enums.IdentityType: v.IDENTITY_TYPES,
    enums.LoyaltyTier: v.LOYALTY_TIERS,
    enums.ShipmentStatus: v.SHIPMENT_STATUSES,
}

# (event type, JSON pointer of the property) -> the vocabulary its enum must list, in order.
EVENT_SCHEMAS: dict[tuple[str, str], tuple[str, ...]] = {
    ("consent.changed", "/properties/channel"): v.CONSENT_CHANNELS,
    ("customer.address_changed", "/properties/kind"): v.ADDRESS_KINDS,
    ("interaction.recorded", "/properties/type"): v.INTERACTION_TYPES,
    ("interaction.recorded", "/properties/channel"): v.CHANNELS,
    ("order.placed", "/properties/channel"): v.CHANNELS,
    ("order.status_changed", "/properties/status"): v.ORDER_STATUSES,
    ("ticket.status_changed", "/properties/status"): v.TICKET_STATUSES,
}
# Enums that are another standard's list, not c360's words.
STANDARDS = {("customer.address_changed", "/properties/country")}  # ISO 3166-1 alpha-2


def schema_enums() -> Iterator[tuple[str, str, list[Any]]]:
    """(event type, pointer, values) of every enum in every version of every event schema."""

    def walk(node: Any, pointer: str) -> Iterator[tuple[str, list[Any]]]:
        if isinstance(node, dict):
            if "enum" in node:
                yield pointer, node["enum"]
            for key, value in node.items():
                yield from walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{pointer}/{index}")

    for path in sorted(SCHEMAS.glob("*/v*.json")):
        for pointer, values in walk(json.loads(path.read_text()), ""):
            yield path.parent.name, pointer, values


def test_every_graph_enumeration_lists_its_vocabulary_in_order() -> None:
    stored = {
        e
        for e in vars(enums).values()
        if isinstance(e, type) and issubclass(e, enums.Stored) and e is not enums.Stored
    }
    assert stored == set(GRAPH), "a graph enumeration without a vocabulary in domain.vocabulary"
    for enum, words in GRAPH.items():
        assert [member.value for member in enum] == list(words), enum.__name__
        assert [member.name for member in enum] == list(words), enum.__name__


def test_every_event_schema_enum_lists_its_vocabulary_in_order() -> None:
    found = list(schema_enums())
    # Every declared enum is still there (a schema that dropped one would accept anything).
    assert set(EVENT_SCHEMAS) | STANDARDS <= {(t, pointer) for t, pointer, _ in found}
    for event_type, pointer, values in found:
        if (event_type, pointer) in STANDARDS:
            continue
        assert (event_type, pointer) in EVENT_SCHEMAS, f"{event_type} {pointer}: not declared"
        assert values == list(EVENT_SCHEMAS[(event_type, pointer)]), f"{event_type} {pointer}"


def test_the_write_model_checks_against_the_vocabulary() -> None:
    assert set(v.ORDER_TRANSITIONS) == set(v.ORDER_STATUSES)
    assert all(targets <= set(v.ORDER_STATUSES) for targets in v.ORDER_TRANSITIONS.values())
    assert set(v.CONSENT_CHANNELS) <= set(v.CHANNELS)


def test_the_seed_data_speaks_the_vocabulary() -> None:
    assert generator.CONSENT_CHANNELS == v.CONSENT_CHANNELS
    assert tuple(tier for tier, _ in generator.TIERS) == v.LOYALTY_TIERS
