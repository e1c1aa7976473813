"""GraphiQL in a real browser, with every request outside c360 refused: it renders from
c360's own assets, runs the agent query with a pasted token, and shows a subscription's event
as it arrives. The test leaves a screenshot in var/screenshots/."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx

from api import ide
from api.examples import EXAMPLE_CUSTOMER
from tests import services
from tests.auth import AGENT
from tests.browser.cdp import Page, browser_page, chromium
from tests.ws.test_subscriptions import CONTACT

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
# Monaco draws spaces as no-break spaces.
RESPONSE = (
    "(document.querySelector('.graphiql-response')?.innerText ?? '').replaceAll('\\u00a0', ' ')"
)
EDITORS = "document.querySelectorAll('.monaco-editor').length"


def _needs_a_browser_and_graphiql() -> str:
    executable = chromium()
    if executable is None:
        services.unavailable("chromium", "the browser test needs Debian's chromium on PATH")
    if not ide.built():
        services.unavailable("graphiql", f"GraphiQL's assets are not built: {ide.BUILD_COMMAND}")
    assert executable is not None
    return executable


async def _response_shows(page: Page, text: str, seconds: float = 20) -> bool:
    try:
        await page.wait_for(f"({RESPONSE}).includes({json.dumps(text)})", seconds=seconds)
    except TimeoutError:
        return False
    return True


async def _paste_token(page: Page) -> None:
    await page.click(".graphiql-editor-tool .graphiql-editor:not(.hidden) .view-lines")
    await page.select_all()
    await page.paste(json.dumps({"Authorization": AGENT["authorization"]}))


async def test_graphiql_works_offline_runs_a_query_and_shows_a_subscription(
    live_server: str,
) -> None:
    executable = _needs_a_browser_and_graphiql()
    customer = EXAMPLE_CUSTOMER
    async with httpx.AsyncClient(base_url=live_server, headers=AGENT, timeout=30) as http:
        name = (
            await http.post(
                "/graphql", json={"query": f'{{ customer(id: "{customer}") {{ name }} }}'}
            )
        ).json()["data"]["customer"]["name"]
        try:
            await _in_the_browser(executable, live_server, http, customer, name)
        finally:  # the README's customer keeps its name for the other tests
            await http.post(
                "/graphql",
                json={
                    "query": CONTACT,
                    "variables": {
                        "input": {"customerId": customer, "firstName": name.split(" ", 1)[0]}
                    },
                },
            )


async def _in_the_browser(
    executable: str, live_server: str, http: httpx.AsyncClient, customer: str, name: str
) -> None:
    async with (
        browser_page(executable, live_server) as page,
        page.shot_on_failure(SCREENSHOTS / "graphiql-failed.png"),
    ):
        await page.send("Page.navigate", url=f"{live_server}/graphql")
        # The query, variables, headers and response editors, all Monaco.
        await page.wait_for(f"{EDITORS} >= 4")

        # Paste the agent's token over the headers the page started with.
        await _paste_token(page)
        # The first ready tab is the agent's view of the README's customer.
        await page.click(".graphiql-execute-button")
        assert await _response_shows(page, name), await page.evaluate(RESPONSE)
        assert '"email"' in await page.evaluate(RESPONSE)

        # The live screen: the subscription tab, started, then a change made over HTTP.
        await page.click(".graphiql-tab:nth-child(3) .graphiql-tab-button")
        await page.wait_for(
            "document.querySelector('.graphiql-query-editor')?.innerText"
            ".includes('customerChanged')"
        )
        await _paste_token(page)  # each tab has headers of its own
        await page.click(".graphiql-execute-button")
        arrived = False
        for _ in range(5):  # the first change may beat the subscription's start
            first_name = f"Browser{uuid.uuid4().hex[:8]}"
            changed = await http.post(
                "/graphql",
                json={
                    "query": CONTACT,
                    "variables": {"input": {"customerId": customer, "firstName": first_name}},
                },
            )
            assert "Success" in changed.text, changed.text
            if await _response_shows(page, first_name, seconds=4):
                arrived = True
                break
        shot = await page.screenshot(SCREENSHOTS / "graphiql-subscription.png")
        assert arrived, f"no event in the response pane (screenshot: {shot})"
        assert "customer.contact_changed" in await page.evaluate(RESPONSE)

        # Everything came from c360 itself; nothing was asked of another host.
        assert page.refused == [], page.refused
        assert any(url.endswith(f"{ide.ASSETS_PATH}/graphiql.js") for url in page.requested)
