"""The GraphiQL page: c360's own assets only, the demo token only with the public development
secret, and a page that says what to run when the assets are not built."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Mount

from api import ide
from api.examples import AGENT_QUERY
from api.settings import Settings
from tests import services


@pytest.fixture
def settings() -> Settings:
    """Development settings (no store is touched)."""
    return Settings(_env_file=None)  # type: ignore[call-arg]


def _config(page: str) -> dict[str, object]:
    found = re.search(r'<script id="c360-graphiql" type="application/json">(.*?)</script>', page)
    assert found is not None, page
    config: dict[str, object] = json.loads(found.group(1))
    return config


def test_the_page_names_no_other_host(settings: Settings) -> None:
    page = ide.page(settings)
    assert not ide.built() or f'src="{ide.ASSETS_PATH}/graphiql.js"' in page
    assert re.findall(r"https?://", page) == []


def test_the_ready_tabs_and_the_demo_analyst_token_in_development(settings: Settings) -> None:
    if not ide.built():
        services.unavailable("graphiql", f"GraphiQL's assets are not built: {ide.BUILD_COMMAND}")
    config = _config(ide.page(settings))
    assert config["tabs"][0] == {"query": AGENT_QUERY, "variables": '{"id": "7"}'}  # type: ignore[index]
    assert "Bearer " in json.loads(str(config["headers"]))["Authorization"]
    # Any other secret: the headers editor starts empty.
    secret = settings.model_copy(update={"auth_jwt_secret": SecretStr("x" * 40)})
    assert "headers" not in _config(ide.page(secret))


async def test_without_its_assets_the_page_says_what_to_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ide, "ASSETS", tmp_path / "dist")
    page = ide.page(settings)
    assert "make graphiql" in page and "Node.js" in page
    assert "<script" not in page
    app = Starlette(routes=[Mount(ide.ASSETS_PATH, ide.assets())])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://x"
    ) as http:
        missing = await http.get(f"{ide.ASSETS_PATH}/graphiql.js")
    assert missing.status_code == 404 and "make graphiql" in missing.text
