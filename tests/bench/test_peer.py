"""The peer answers exactly what was recorded for exactly the requests wrk sends, and says so
when its answer is not c360's. Real node, real Apollo Server, real wrk; recordings written here."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bench.documents import ENTITIES_QUERY
from bench.peer import (
    PeerUnavailableError,
    Recording,
    difference,
    graphql_js_floors,
    peer_node,
    request_variables,
    running_peer,
)
from bench.workloads import WORKLOADS
from bench.wrk import run_wrk
from tests import services

ENTITIES = WORKLOADS["entities-100"]
# 120 ids and 100 per request: the requests' windows wrap around the list (6 distinct bodies).
IDS = [str(n) for n in range(1, 121)]
NAMES_QUERY = """query Names($id: ID!) {
  first: customer(id: $id) { id name }
  second: customer(id: "2") { name email }
}"""


def _entities_answer(variables: dict[str, Any] | None) -> dict[str, Any]:
    assert variables is not None
    return {
        "_entities": [
            {
                "id": r["id"],
                "name": f"Customer {r['id']}",
                "email": None,
                "loyalty": {"tier": "GOLD"},
            }
            for r in variables["representations"]
        ]
    }


RECORDINGS: dict[str, Recording] = {
    "entities-100": {
        "query": ENTITIES_QUERY,
        "requests": [
            {"variables": v, "data": _entities_answer(v)} for v in request_variables(ENTITIES, IDS)
        ],
    },
    "names": {
        "query": NAMES_QUERY,
        "requests": [
            {
                "variables": {"id": "1"},
                "data": {
                    "first": {"id": "1", "name": "Ada"},
                    "second": {"name": "Bo", "email": "bo@example.com"},
                },
            },
            # Members out of the document's order: not an answer c360 could have given.
            {
                "variables": {"id": "3"},
                "data": {"first": {"name": "Cy", "id": "3"}, "second": None},
            },
        ],
    },
}


@pytest.fixture(scope="module")
def node() -> str:
    try:
        return peer_node()
    except PeerUnavailableError as error:
        services.unavailable("node", str(error))
        raise


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("peer") / "recordings.json"
    path.write_bytes(orjson.dumps(RECORDINGS))
    return path


@pytest.fixture(scope="module")
def peer(node: str, recordings: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_peer(node, recordings, tmp_path_factory.mktemp("logs") / "peer.log") as url:
        yield url


def test_the_requests_are_the_windows_of_the_wrk_rotation() -> None:
    windows = [
        [r["id"] for r in v["representations"]]  # type: ignore[index]
        for v in request_variables(ENTITIES, IDS)
    ]
    assert len(windows) == 6 and all(len(w) == 100 for w in windows)
    # Lua: request n holds ids n*100+1 .. n*100+100, modulo 120 (1-based indices).
    assert windows[0] == IDS[1:101]
    assert windows[1] == IDS[101:] + IDS[:81]
    assert request_variables(WORKLOADS["typename"], []) == [None]
    assert request_variables(WORKLOADS["agent360-warm"], [5, 6]) == [{"id": "5"}, {"id": "6"}]


def test_the_peer_answers_every_request_wrk_sends_with_the_recorded_data(peer: str) -> None:
    if shutil.which("wrk") is None:
        services.unavailable("wrk", "the bench needs wrk on PATH (apt-get install wrk)")
    # `_entities` selects its type by a fragment and the answer has no `__typename`.
    assert difference(peer, RECORDINGS["entities-100"]) is None
    run = run_wrk(
        peer, ENTITIES.query, IDS, connections=2, seconds=1, keys=ENTITIES.keys, variable="id"
    )
    assert run.requests > 6 and run.errors == 0 and run.socket_errors == 0


def test_aliases_of_one_field_each_answer_their_own_key(peer: str) -> None:
    assert difference(peer, RECORDINGS["names"]) is None


def test_an_answer_other_than_the_recorded_one_is_reported(peer: str) -> None:
    second = RECORDINGS["names"]["requests"][1]
    differs = difference(peer, {"query": NAMES_QUERY, "requests": [second]})
    assert differs is not None and differs.startswith("the peer's data differs from c360's")
    assert '"first":{"id":"3","name":"Cy"}' in differs


def test_a_request_nobody_recorded_is_an_error(peer: str) -> None:
    body = {"query": NAMES_QUERY, "variables": {"id": "404"}}
    answer = httpx.post(peer, json=body, timeout=30).json()
    # Each root field fails on its own (both are nullable), so wrk counts the answer an error.
    assert answer["data"] == {"first": None, "second": None}
    assert [e["message"] for e in answer["errors"]] == ["no recorded answer for this request"] * 2


def test_the_graphql_js_floor_executes_each_workloads_recordings(node: str, tmp_path: Path) -> None:
    good = {
        **RECORDINGS,
        "names": {**RECORDINGS["names"], "requests": RECORDINGS["names"]["requests"][:1]},
    }
    path = tmp_path / "recordings.json"
    path.write_bytes(orjson.dumps(good))
    floors = graphql_js_floors(node, path, seconds=0.2)
    assert set(floors) == {"entities-100", "names"}
    assert all(ops > 0 for ops in floors.values())


def test_the_floor_times_only_work_that_gives_c360s_answer(node: str, recordings: Path) -> None:
    with pytest.raises(RuntimeError, match="names: graphql-js did not give c360's answer"):
        graphql_js_floors(node, recordings, seconds=0.2)


def test_without_node_20_the_peer_is_unavailable_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PeerUnavailableError, match="node is not on PATH"):
        peer_node()
    old = tmp_path / "node"
    old.write_text("#!/bin/sh\necho v18.19.0\n")
    old.chmod(0o755)
    with pytest.raises(PeerUnavailableError, match=r"node v18\.19\.0 is older than 20"):
        peer_node()


def test_a_peer_log_kept_from_an_earlier_run_does_not_pass_for_this_peer_listening(
    node: str, recordings: Path, tmp_path: Path
) -> None:
    log = tmp_path / "peer.log"
    log.write_bytes(b'LISTENING {"url":"http://127.0.0.1:1/"}\n')  # the last run's peer
    with running_peer(node, recordings, log) as url:
        assert difference(url, RECORDINGS["names"]) is None  # answered, not refused
