"""HTTP clients of the vendor APIs: one batch endpoint each, round trips counted per vendor.

aiohttp rather than httpx, which c360 uses where a call is rare (fetching a JWKS): a vendor
call is on the request path of every cold read, and aiohttp's C parser costs about a quarter
of httpx's CPU per call (about 220 against 800 microseconds measured here for one batch
POST to the simulator), CPU that the request's other work shares one core with.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import certifi
import orjson
from opentelemetry.trace import SpanKind

from sources import tracing
from sources.declaration import VendorAPI
from sources.roundtrips import RoundTrips

_JSON = {"content-type": "application/json"}
# Below the 5 s after which common servers (uvicorn's default) close an idle connection:
# aiohttp does not retry a POST sent on a connection the server has just closed.
_KEEPALIVE_SECONDS = 4.0

R = TypeVar("R")


class VendorAnswerError(aiohttp.ClientError):
    """The vendor answered, but not with what its API promises (a redirect, a body that is
    not the JSON of a batch answer): the vendor is unavailable for that call."""


class VendorClient:
    """A pooled HTTP client for one vendor's API, counting each request it sends.

    Paths are appended to `base_url` as they are (a base with a path prefix keeps it).
    Redirects are not followed (a POST redirected becomes a GET without its body), and any
    status outside 2xx, or an answer that is not what the API promises, raises an
    `aiohttp.ClientError`, as does any failure to reach the vendor; a slow vendor raises
    `TimeoutError`. The loaders map them to SOURCE_UNAVAILABLE and SOURCE_TIMEOUT.
    Certificates are checked against certifi's roots and proxies are taken from the
    environment (`HTTPS_PROXY`, `NO_PROXY`), as httpx did.
    """

    def __init__(
        self, api: VendorAPI, base_url: str, *, timeout: float, round_trips: RoundTrips | None
    ) -> None:
        self.api = api
        self.base_url = base_url.rstrip("/")
        # Seconds per call: the session's bound, and the loaders' (SOURCE_TIMEOUT past it).
        self.timeout = timeout
        self._round_trips = round_trips
        # Made inside the running loop, as aiohttp asks: `open_connections` is a coroutine.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=50,
                keepalive_timeout=_KEEPALIVE_SECONDS,
                ssl=ssl.create_default_context(cafile=certifi.where()),
            ),
            timeout=aiohttp.ClientTimeout(total=timeout),
            headers={"user-agent": "c360"},
            trust_env=True,
        )

    async def post(self, path: str, body: dict[str, Any], parse: Callable[[Any], R]) -> R:
        """POST `body` as JSON to `path`; the JSON answer, through `parse` (which raises
        KeyError, TypeError or ValueError for an answer of the wrong shape)."""
        self._count()
        url = self.base_url + path
        # The path names the API's operation; the body (ids) is not in the span.
        attributes = {"http.request.method": "POST", "url.path": path, "c360.source": self.api.name}
        with tracing.span(f"POST {self.api.name}", attributes, SpanKind.CLIENT) as call:
            async with self._session.post(
                url, data=orjson.dumps(body), headers=_JSON, allow_redirects=False
            ) as response:
                call.set_attribute("http.response.status_code", response.status)
                if not 200 <= response.status < 300:
                    raise aiohttp.ClientResponseError(
                        response.request_info,
                        response.history,
                        status=response.status,
                        message=response.reason or "",
                    )
                raw = await response.read()
        try:
            return parse(orjson.loads(raw))
        except (KeyError, TypeError, ValueError) as error:  # orjson's errors are ValueErrors
            # Not the body itself: it is logged, and a vendor's answer carries personal data.
            kind = type(error).__name__
            raise VendorAnswerError(
                f"{url} answered {len(raw)} bytes that are not its API's answer ({kind})"
            ) from error

    async def status(self, path: str) -> int:
        """The status a GET of `path` answers (any status: the health check judges it)."""
        self._count()
        async with self._session.get(self.base_url + path, allow_redirects=False) as response:
            return response.status

    def _count(self) -> None:
        if self._round_trips is not None:
            self._round_trips.record(self.api.name)

    async def close(self) -> None:
        await self._session.close()


def create_client(
    api: VendorAPI, base_url: str, *, timeout: float, round_trips: RoundTrips | None = None
) -> VendorClient:
    """A pooled client for one vendor, counting each request it sends."""
    return VendorClient(api, base_url, timeout=timeout, round_trips=round_trips)


__all__ = ["VendorAnswerError", "VendorClient", "create_client"]
