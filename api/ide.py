"""GraphiQL, served by c360 itself: the page, and the assets `make install` builds from the
exactly pinned npm packages in api/graphiql (no CDN: GraphiQL works offline and on closed
networks)."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.responses import PlainTextResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from api.demo import demo_tokens
from api.examples import AGENT_QUERY, CHANGES_SUBSCRIPTION, EXAMPLE_CUSTOMER, HISTORY_QUERY
from api.settings import Settings

ASSETS = Path(__file__).parent / "graphiql" / "dist"
ASSETS_PATH = "/graphiql/assets"
BUILD_COMMAND = "make graphiql"

_VARIABLES = json.dumps({"id": EXAMPLE_CUSTOMER})
TABS = [
    {"query": AGENT_QUERY, "variables": _VARIABLES},
    {"query": HISTORY_QUERY, "variables": _VARIABLES},
    {"query": CHANGES_SUBSCRIPTION, "variables": _VARIABLES},
]

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>c360 GraphiQL</title>
<link rel="stylesheet" href="{assets}/graphiql.css">
<style>body {{ margin: 0; }} #graphiql {{ height: 100vh; }}</style>
</head>
<body>
<div id="graphiql"></div>
<script id="c360-graphiql" type="application/json">{config}</script>
<script type="module" src="{assets}/graphiql.js"></script>
</body>
</html>
"""

_NOT_BUILT = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>c360 GraphiQL: not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>GraphiQL is not built on this server</h1>
<p>c360 serves GraphiQL from its own files, built from pinned npm packages when it is
installed. This installation has none: Node.js 20 or newer and npm were missing then.</p>
<p>Install Node.js, run <code>{command}</code> in c360's checkout and reload this page.
Meanwhile every query works over HTTP, for instance with <code>curl</code> (see the README).</p>
</body>
</html>
"""


def built() -> bool:
    """Whether the assets are here (`make graphiql` has run)."""
    return (ASSETS / "graphiql.js").is_file()


def page(settings: Settings) -> str:
    """The GraphiQL page: the ready tabs and, with the development secret only, the demo
    analyst's token in the headers editor (that secret is public: the token opens nothing
    anyone could not sign)."""
    if not built():
        return _NOT_BUILT.format(command=BUILD_COMMAND)
    config: dict[str, object] = {"endpoint": "/graphql", "tabs": TABS}
    analyst = demo_tokens(settings).get("analyst")
    if analyst:
        config["headers"] = json.dumps({"Authorization": f"Bearer {analyst}"}, indent=2)
    # `</` ends a script element wherever it stands, even inside a JSON string.
    embedded = json.dumps(config).replace("</", "<\\/")
    return _PAGE.format(assets=ASSETS_PATH, config=embedded)


def assets() -> ASGIApp:
    """The built files; a 404 that says how to build them until they are."""
    files = StaticFiles(directory=ASSETS, check_dir=False)
    missing = PlainTextResponse(f"GraphiQL is not built: run {BUILD_COMMAND}.", 404)

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        # Checked per request: `make graphiql` may run while c360 serves.
        await (files if ASSETS.is_dir() else missing)(scope, receive, send)

    return serve
