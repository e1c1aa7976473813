"""A vendor API declared once (a stub, in `new_vendor_child`) reaches settings, the cache,
/readyz, /metrics and the bench without any of them naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from api.source_settings import url_variable
from sources.catalog import NAMES, VENDORS
from tests.conftest import Simulator

ROOT = Path(__file__).resolve().parents[2]


def test_a_declared_vendor_reaches_every_part_that_reads_declarations(
    mongo_url: str, simulator: Simulator, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "C360_DATA_DIR": str(tmp_path),
        "C360_MONGO_URL": mongo_url,
        "C360_MONGO_DATABASE": f"c360_test_{uuid.uuid4().hex[:12]}",
        **{url_variable(api): simulator.url for api in VENDORS},
        # The stub's own variables, named after it by the declaration alone.
        "C360_WEATHER_URL": simulator.url,
        "C360_WEATHER_TIMEOUT": "0.75",
        "C360_CACHE_TTL_WEATHER": "9",
        "C360_RELAY_ENABLED": "false",
        "C360_REDIS_URL": "",
    }
    child = subprocess.run(
        [sys.executable, "-m", "tests.sources.new_vendor_child"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    found = json.loads(child.stdout.splitlines()[-1])
    assert found["settings"] == {"timeout": 0.75, "cache_ttl": 9.0, "url": simulator.url}
    assert found["cache_ttl_in_force"] == 9.0
    assert found["codec_round_trip"] is True
    # /readyz asked the stub's health path on its URL (the simulator answers /healthz).
    assert found["readyz"]["status"] == "up"
    assert found["metrics"] == ['c360_source_round_trips_total{source="weather"} 1.0']
    assert f"round trips/req ({', '.join((*NAMES, 'weather'))})" in found["bench_columns"]
