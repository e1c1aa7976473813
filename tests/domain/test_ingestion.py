"""The ingestion pipeline: interactions of many customers written together, with the
guarantees of one event at a time (per-customer order, one application per event id, dead
letters with their reasons)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Any

import httpx

from api.connections import Connections
from domain.appliers import apply_interactions
from domain.errors import ChangeRejectedError
from domain.ingestion import Grouped, Ingestion
from sources.events.envelope import Event
from sources.events.outbox import UniqueIds, in_mongo_outbox, was_issued
from sources.events.outbox_upgrade import IDS_LISTED_SINCE, list_legacy_ids
from sources.events.registry import SchemaRegistry
from sources.mongo.queries import Database, ensure_indexes
from sources.thirdparty.simulator import VendorStore
from tests.auth import PUBLISHER
from tests.builders import build_customer
from tests.http.test_events_applied import BATCH, cloud_event, view


def interaction(subject: int | str, kind: str = "CALL", **extra: Any) -> dict[str, Any]:
    return cloud_event(
        "interaction.recorded",
        int(subject),
        {"type": kind, "channel": "CONTACT_CENTER", "occurred_at": "2026-11-20T10:00:00Z"},
        **extra,
    )


async def post(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = await client.post(
        "/events", json=events, headers=PUBLISHER | {"content-type": BATCH}
    )
    assert response.status_code in (202, 400), response.text
    body: dict[str, Any] = response.json()
    return body


async def test_many_customers_interactions_take_one_transaction_per_store(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    customers = [await build_customer(connections, vendor_store) for _ in range(4)]
    events = [interaction(cid, kind) for kind in ("CALL", "CHAT", "EMAIL") for cid in customers]
    # The pipeline looks for the outbox's unique index once a minute: not in what is counted.
    await post(client, [interaction(customers[0], "APP_OPEN")])
    before = connections.round_trips.snapshot()
    body = await post(client, events)
    spent = connections.round_trips.since(before)

    assert (body["accepted"], body["duplicates"], body["rejected"]) == (12, 0, 0)
    # SQL: the customers, in one query. MongoDB: the outbox documents, the interactions, the
    # commit; ids applied before are looked for only when the outbox refuses one. One at a
    # time it was 12 and 36.
    assert (spent["sql"], spent["mongo"]) == (1, 3)
    [document] = await connections.db.outbox.find(
        {"event_ids": events[0]["id"]}, {"event_ids": 1}
    ).to_list(None)
    # Each customer's run in its order, the customers as they first appear.
    runs = [e["id"] for cid in customers for e in events if e["subject"] == str(cid)]
    assert document["event_ids"] == runs
    for cid in customers:
        customer = await view(
            client,
            cid,
            "timeline(first: 3, types: [CALL, CHAT, EMAIL]) { edges { node { type } } }",
        )
        kinds = {edge["node"]["type"] for edge in customer["timeline"]["edges"]}
        assert kinds == {"CALL", "CHAT", "EMAIL"}


async def test_an_id_is_applied_once_within_a_batch_across_batches_and_paths(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    other = await build_customer(connections, vendor_store)
    first = [interaction(cid), interaction(other)]
    assert (await post(client, first))["accepted"] == 2
    single = interaction(cid, "CHAT")
    # Applied on its own (one event: one document with the id as its own).
    assert (await post(client, [single]))["accepted"] == 1

    repeat = interaction(other, "EMAIL")
    body = await post(
        client, [first[0], interaction(cid, "APP_OPEN"), repeat, single, repeat, first[1]]
    )
    assert [r["status"] for r in body["results"]] == [
        "duplicate",
        "accepted",
        "accepted",
        "duplicate",
        "duplicate",
        "duplicate",
    ]
    assert await in_mongo_outbox(db=connections.db, event_ids=[repeat["id"], single["id"]]) == {
        repeat["id"],
        single["id"],
    }
    assert await was_issued(engine=connections.engine, db=connections.db, event_id=repeat["id"])
    customer = await view(client, other, "timeline(first: 50, types: [EMAIL]) { edges { cursor } }")
    assert len(customer["timeline"]["edges"]) == 1


async def test_an_id_applied_by_a_document_of_before_listed_ids_is_still_a_duplicate(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    # A document of a version before documents listed their event ids: its id only as `_id`,
    # which no grouped write meets. At start, c360 lists it (`list_legacy_ids`).
    cid = await build_customer(connections, vendor_store)
    old, new = interaction(cid, "CHAT"), interaction(cid, "EMAIL")
    await connections.db.outbox.insert_one(
        {
            "_id": old["id"],
            "payload": Event.from_json(old).to_json(),
            "created_at": IDS_LISTED_SINCE - dt.timedelta(days=1),
            "published": True,
        }
    )
    assert await list_legacy_ids(db=connections.db) == 1
    assert await list_legacy_ids(db=connections.db) == 0  # once
    body = await post(client, [old, new])
    assert [r["status"] for r in body["results"]] == ["duplicate", "accepted"]
    customer = await view(client, cid, "timeline(first: 50, types: [CHAT]) { edges { cursor } }")
    assert customer["timeline"]["edges"] == []


async def test_a_concurrent_delivery_of_the_same_batch_applies_each_event_once(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    customers = [await build_customer(connections, vendor_store) for _ in range(3)]
    events = [interaction(cid, "STORE_VISIT") for cid in customers]
    bodies = await asyncio.gather(*(post(client, events) for _ in range(3)))
    assert sum(body["accepted"] for body in bodies) == 3
    assert sum(body["duplicates"] for body in bodies) == 6
    for cid in customers:
        customer = await view(
            client, cid, "timeline(first: 50, types: [STORE_VISIT]) { edges { cursor } }"
        )
        assert len(customer["timeline"]["edges"]) == 1


async def test_a_customer_that_cannot_take_the_change_is_dead_lettered_beside_the_group(
    client: httpx.AsyncClient, connections: Connections, vendor_store: VendorStore
) -> None:
    cid = await build_customer(connections, vendor_store)
    body = await post(client, [interaction(987654321), interaction(cid), interaction("0")])
    assert [r["status"] for r in body["results"]] == ["rejected", "accepted", "rejected"]
    assert body["results"][0]["reasons"] == [
        "cannot be applied: no customer has id 987654321 (CUSTOMER_NOT_FOUND)"
    ]


class Recorder:
    """Stands in for the appliers (not for a store) to see what the pipeline asks and when:
    each application logs ("start", ids) when it begins and ("end", ids) when it answers, a
    few loop turns later, so that one begun before another ended shows."""

    def __init__(self) -> None:
        self.log: list[tuple[str, tuple[str, ...]]] = []
        self.groups: list[list[list[str]]] = []

    async def _taking(self, ids: tuple[str, ...]) -> None:
        self.log.append(("start", ids))
        for _ in range(3):
            await asyncio.sleep(0)
        self.log.append(("end", ids))

    async def one(self, event: Event) -> bool:
        await self._taking((event.id,))
        if event.subject == "404":
            raise ChangeRejectedError("CUSTOMER_NOT_FOUND", "no customer has id 404")
        return True

    async def runs(self, runs: Sequence[Sequence[Event]]) -> list[list[bool] | None]:
        # Subject 9's runs are refused: they go one by one afterwards.
        taken = [run for run in runs if run[0].subject != "9"]
        self.groups.append([[event.id for event in run] for run in runs])
        await self._taking(tuple(event.id for run in taken for event in run))
        return [None if run[0].subject == "9" else [True] * len(run) for run in runs]

    def spans(self) -> dict[str, tuple[int, int]]:
        """Where each event's application began and ended in the log."""
        began: dict[str, int] = {}
        spans: dict[str, tuple[int, int]] = {}
        for at, (edge, ids) in enumerate(self.log):
            for event_id in ids:
                if edge == "start":
                    began[event_id] = at
                else:
                    spans[event_id] = (began[event_id], at)
        return spans


async def test_each_subject_keeps_its_order_and_runs_meet_in_as_few_writes_as_it_allows() -> None:
    recorder = Recorder()
    kept: list[int] = []

    async def keep(rejections: Sequence[Any]) -> None:
        kept.append(len(rejections))

    pipeline = Ingestion(
        SchemaRegistry(),
        apply=recorder.one,
        keep=keep,
        grouped=Grouped(frozenset({"interaction.recorded"}), recorder.runs),
    )
    contact = {"email": "order@example.com"}
    items = [
        interaction(1, id="a1"),
        cloud_event("customer.contact_changed", 1, contact, id="a2"),
        interaction(1, id="a3"),
        interaction(1, id="a4"),
        interaction(2, id="b1"),
        cloud_event("customer.contact_changed", 3, contact, id="c1"),
        interaction(3, id="c2"),
        interaction(9, id="d1"),
        interaction(9, id="d2"),
        cloud_event("customer.contact_changed", 404, contact, id="e1"),
    ]
    results = await pipeline.ingest(items)

    assert [r.status for r in results] == ["accepted"] * 9 + ["rejected"]
    assert kept == [1]
    # Subjects 1, 2 and 9 start with interactions: one write. Then 1 and 3 each reach a run
    # after their contact change: together when their changes end in the same turn of the
    # loop. Subject 9's run was refused by the write and went one by one.
    groups = recorder.groups
    assert groups[0] == [["a1"], ["b1"], ["d1", "d2"]]
    assert sorted(run for group in groups[1:] for run in group) == [["a3", "a4"], ["c2"]]
    # Each subject's event began only once the one before it had been answered, or went in
    # the same write, after it in its run (a3 and a4).
    spans = recorder.spans()
    for subject in ("a1 a2 a3 a4", "c1 c2", "d1 d2"):
        ids = subject.split()
        assert set(ids) <= set(spans), ids
        for before, after in itertools.pairwise(ids):
            together = spans[before] == spans[after]
            assert together or spans[before][1] < spans[after][0], (before, after, recorder.log)


async def test_two_deliveries_of_one_group_at_once_record_each_interaction_once(
    connections: Connections, vendor_store: VendorStore
) -> None:
    customers = [await build_customer(connections, vendor_store) for _ in range(3)]
    events = [Event.from_json(interaction(cid, "STORE_VISIT")) for cid in customers]
    runs = [[event] for event in events]
    # Both look for applied ids before either writes, or the second finds the first's: either
    # way each id is written once, by whichever delivery the outbox's unique ids let through.
    unique_ids = UniqueIds(connections.db)
    answers = await asyncio.gather(
        apply_interactions(connections.changes, unique_ids, runs),
        apply_interactions(connections.changes, unique_ids, runs),
    )
    fates = [[run[0] if run is not None else None for run in answer] for answer in answers]
    for first, second in zip(*fates, strict=True):
        assert sorted([first, second], key=str) in ([False, True], [None, True]), fates
    for cid in customers:
        count = await connections.db.interactions.count_documents(
            {"customer_id": cid, "type": "STORE_VISIT"}
        )
        assert count == 1


async def test_interactions_are_grouped_only_while_the_outbox_ids_are_unique(
    connections: Connections, own_mongo: Database, vendor_store: VendorStore
) -> None:
    unique_ids = UniqueIds(own_mongo, every=0)
    runs = [[Event.from_json(interaction(await build_customer(connections, vendor_store)))]]
    # No index yet (no outbox at all): every run is left to be applied one by one.
    assert not await unique_ids.hold()
    assert await apply_interactions(connections.changes, unique_ids, runs) == [None]
    await ensure_indexes(db=own_mongo)
    assert await unique_ids.hold()
    await own_mongo.outbox.drop_index("event_ids_1")
    assert not await unique_ids.hold()
