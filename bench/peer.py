"""The peer: Apollo Server 5 (graphql-js 16) serving c360's schema with c360's own answers.

For every GraphQL workload the bench records, from the running c360, the answer to each
distinct request a wrk run over the peer's ids sends; the peer (bench/peer/server.mjs) looks an
incoming request's answer up by its document and variables and executes the real document over
it with graphql-js, every field reading its response key. So the peer does the execution and
HTTP work of a GraphQL server and nothing else: no I/O, no auth, no limits.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from api.settings import Settings
from bench.credentials import bench_authorization
from bench.workloads import Workload
from sources.net import free_port, stop_process

PEER_DIR = Path(__file__).parent / "peer"
# c360's schema.graphql plus the federation entry points entities-100 needs.
SCHEMA = Path(__file__).parent.parent / "schema.subgraph.graphql"
# As many ids as the engine floor runs over (bench/__main__.py), so both floors see one data set.
PEER_IDS = 200
NODE_MAJOR = 20
INSTALL_TIMEOUT = 300.0
START_TIMEOUT = 60.0

Recording = dict[str, Any]  # {"query": str, "requests": [{"variables": ..., "data": ...}]}


class PeerUnavailableError(RuntimeError):
    """The peer cannot run here (no Node.js 20+, or its packages cannot be installed)."""


def peer_node() -> str:
    """The node executable, with bench/peer's pinned packages installed (`npm ci` when
    missing); PeerUnavailableError saying why not."""
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailableError("node is not on PATH (the peer runs on Node.js 20+)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    found = re.match(r"v(\d+)\.", version.stdout.strip())
    if found is None or int(found.group(1)) < NODE_MAJOR:
        raise PeerUnavailableError(
            f"node {version.stdout.strip() or '?'} is older than {NODE_MAJOR} (the peer needs 20+)"
        )
    if not (PEER_DIR / "node_modules" / "@apollo" / "server").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise PeerUnavailableError(f"npm is not on PATH; needed to install {PEER_DIR}")
        try:
            install = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=PEER_DIR,
                capture_output=True,
                text=True,
                check=False,
                timeout=INSTALL_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise PeerUnavailableError(
                f"npm ci in {PEER_DIR} took over {INSTALL_TIMEOUT:.0f} s"
            ) from None
        if install.returncode != 0:
            raise PeerUnavailableError(f"npm ci in {PEER_DIR} failed: {install.stderr[-500:]}")
    return node


def describe(node: str) -> str:
    """What the peer runs on: its pinned packages and the node version."""
    pins = json.loads((PEER_DIR / "package.json").read_text())["dependencies"]
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"Apollo Server {pins['@apollo/server']} (graphql-js {pins['graphql']}) on Node "
        f"{version}, answers from memory"
    )


def request_variables(workload: Workload, ids: Sequence[int | str]) -> list[dict[str, Any] | None]:
    """The variables of each distinct request a wrk run of `workload` over `ids` sends, in
    order: the rotation of bench/wrk.py's Lua script (one thread), in Python."""
    if not ids:
        return [None]
    if workload.keys is None:
        return [workload.variables([key]) for key in dict.fromkeys(ids)]
    count, size = workload.keys.count, len(ids)
    # Request n holds ids n*count+1 .. n*count+count (mod size): the windows repeat after
    # size / gcd(size, count) requests.
    return [
        workload.variables([ids[(n * count + i) % size] for i in range(1, count + 1)])
        for n in range(size // math.gcd(size, count))
    ]


def record(url: str, workload: Workload, ids: Sequence[int | str]) -> Recording:
    """c360's answer to each distinct request of `workload` over `ids`, asked one by one with
    the bench's credential; RuntimeError when an answer is not a plain success."""
    requests = []
    headers = {"Authorization": bench_authorization(Settings())}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for variables in request_variables(workload, ids):
            body: dict[str, Any] = {"query": workload.query}
            if variables is not None:
                body["variables"] = variables
            response = client.post("/graphql", json=body)
            answer = response.json() if response.status_code == 200 else {}
            if "data" not in answer or answer.get("errors"):
                raise RuntimeError(
                    f"c360 answered {workload.name} with {response.status_code}: "
                    f"{response.text[:300]}"
                )
            requests.append({"variables": variables, "data": answer["data"]})
    return {"query": workload.query, "requests": requests}


def difference(peer_url: str, recording: Recording) -> str | None:
    """None when the peer answers the first recorded request with c360's data (the same JSON
    value, members in the same order), else what differs."""
    first = recording["requests"][0]
    body: dict[str, Any] = {"query": recording["query"]}
    if first["variables"] is not None:
        body["variables"] = first["variables"]
    response = httpx.post(peer_url, json=body, timeout=60)
    if response.status_code != 200:
        return f"the peer answered {response.status_code}: {response.text[:300]}"
    # Pairs keep the members' order; numbers compare by value (c360 writes 12.0 where
    # graphql-js writes 12, the same JSON number).
    answer = json.loads(response.text, object_pairs_hook=list)
    data = dict(answer).get("data")
    expected = json.loads(json.dumps(first["data"]), object_pairs_hook=list)
    if data == expected:
        return None
    return f"the peer's data differs from c360's: {response.text[:300]}"


@contextlib.contextmanager
def running_peer(node: str, recordings: Path, log: Path) -> Iterator[str]:
    """The peer serving `recordings` on a free port of 127.0.0.1; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # The log is kept across runs: only what this peer writes says it is listening.
        written_before = out.tell()
        process = subprocess.Popen(
            [node, "server.mjs", str(SCHEMA), str(recordings.resolve()), str(port)],
            cwd=PEER_DIR,
            env={"PATH": str(Path(node).parent), "NODE_ENV": "production"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_listening(process, log, written_before)
        yield url
    finally:
        stop_process(process, timeout=10)


def _wait_listening(process: subprocess.Popen[bytes], log: Path, offset: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the peer exited with code {process.returncode}: {log}")
        if b"LISTENING " in log.read_bytes()[offset:]:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the peer did not listen within {START_TIMEOUT:.0f} s; see {log}")


def graphql_js_floors(node: str, recordings: Path, *, seconds: float) -> dict[str, float]:
    """Operations per second of each workload's recorded requests executed in-process by
    graphql-js `execute` (bench/peer/floor.mjs), `seconds` each."""
    completed = subprocess.run(
        [node, "floor.mjs", str(SCHEMA), str(recordings.resolve()), str(seconds)],
        cwd=PEER_DIR,
        env={"PATH": str(Path(node).parent), "NODE_ENV": "production"},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the graphql-js floor failed: {completed.stderr[-1000:]}")
    floors: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return floors
