"""GraphQL over HTTP (the GraphQL-over-HTTP spec), on a lean path through graphql-core.

Documents are parsed and validated once and kept in an LRU cache; execution goes straight to
graphql-core (`api.execution`), and responses are encoded with orjson.

Status codes follow the spec. A request that is not a well-formed GraphQL-over-HTTP request (bad
JSON, a missing or mistyped parameter, an unsupported Content-Type) gets a 4xx whatever the media
type: it never reached GraphQL, so there is no GraphQL response for a 200 to vouch for. For a
GraphQL request error (parsing, validation, operation selection, variable coercion) the media type
decides: `application/graphql-response+json` gets 400, `application/json` gets 200 with `errors`,
since a client cannot tell a 4xx `application/json` body from an intermediary's. The
graphql-http audit (tests/http/test_graphql_http_audit.py) holds the endpoint to this.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.http.ides import get_graphql_ide_html

from api.context import Context
from api.errors import format_error
from api.execution import Executor

log = logging.getLogger(__name__)

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
MAX_CACHED_DOCUMENTS = 1024


class RequestError(Exception):
    """A request that is not a well-formed GraphQL-over-HTTP request; nothing was executed.

    Its status is sent whatever the response media type (the spec's "JSON parsing failure" and
    "Invalid parameters" cases): 400 unless something more precise applies (405, 415).
    """

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    query: str
    operation_name: str | None
    variables: dict[str, Any] | None
    extensions: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    document: DocumentNode | None
    errors: list[GraphQLError]


class DocumentCache:
    """Parsed and validated documents by query text; validation is the costly part."""

    def __init__(self, schema: strawberry.Schema, size: int = MAX_CACHED_DOCUMENTS) -> None:
        self._schema = schema._schema
        self._size = size
        self._entries: OrderedDict[str, PreparedDocument] = OrderedDict()

    def get(self, query: str) -> PreparedDocument:
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
            return entry
        try:
            document = parse(query)
        except GraphQLError as error:
            entry = PreparedDocument(None, [error])
        else:
            entry = PreparedDocument(document, list(validate(self._schema, document)))
        self._entries[query] = entry
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return entry


def negotiate(accept: str | None) -> str | None:
    """The response media type for an Accept header, or None when none is acceptable."""
    if not accept:
        return JSON
    best: tuple[float, int, str] | None = None
    for index, item in enumerate(accept.split(",")):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media == GRAPHQL_RESPONSE:
            chosen = GRAPHQL_RESPONSE
        elif media in (JSON, "*/*", "application/*"):
            chosen = JSON
        else:
            continue
        if quality > 0 and (best is None or (quality, -index) > best[:2]):
            best = (quality, -index, chosen)
    return best[2] if best else None


def wants_ide(request: Request) -> bool:
    """A browser asking for the page (not a client asking for a result)."""
    return (
        request.method == "GET"
        and "query" not in request.query_params
        and "text/html" in request.headers.get("accept", "")
    )


def _as_dict(value: Any, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RequestError(f"`{name}` must be a JSON object when given.")
    return value


def read_params(raw: Any) -> GraphQLRequest:
    """Validate the request parameters (query, operationName, variables, extensions)."""
    if isinstance(raw, list):
        raise RequestError("Batched requests (a JSON array) are not supported; send one object.")
    if not isinstance(raw, dict):
        raise RequestError("The request body must be a JSON object.")
    query = raw.get("query")
    if not isinstance(query, str):
        raise RequestError(
            "`query` is required and must be a string."
            if query is None
            else "`query` must be a string."
        )
    operation_name = raw.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError("`operationName` must be a string when given.")
    return GraphQLRequest(
        query=query,
        operation_name=operation_name,
        variables=_as_dict(raw.get("variables"), "variables"),
        extensions=_as_dict(raw.get("extensions"), "extensions"),
    )


def _json_param(request: Request, name: str) -> Any:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise RequestError(f"`{name}` must be URL-encoded JSON.") from error


async def parse_request(request: Request) -> GraphQLRequest:
    """The GraphQL request carried by a GET query string or a JSON POST body."""
    if request.method == "GET":
        raw: Any = {
            "query": request.query_params.get("query"),
            "operationName": request.query_params.get("operationName"),
            "variables": _json_param(request, "variables"),
            "extensions": _json_param(request, "extensions"),
        }
        return read_params(raw)
    content_type = request.headers.get("content-type")
    if content_type is None:
        raise RequestError("A POST needs `Content-Type: application/json`.", status=415)
    media = content_type.partition(";")[0].strip().lower()
    if media != JSON:
        raise RequestError(
            f"Unsupported Content-Type {media!r}; send application/json.", status=415
        )
    body = await request.body()
    if not body:
        raise RequestError("The POST body is empty; send a JSON object with a `query`.")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError("The request body is not valid JSON.") from error
    return read_params(raw)


def select_operation(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode:
    """The operation to run, by name or the only one, as the spec's GetOperation does.

    Failing raises a GraphQLError, not a RequestError: the request was well-formed and GetOperation
    failing is a GraphQL request error, answered like a validation failure (200 for
    `application/json`).
    """
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        if len(operations) != 1:
            raise GraphQLError(
                "The document has several operations: name the one to run in `operationName`."
            )
        return operations[0]
    for operation in operations:
        if operation.name and operation.name.value == operation_name:
            return operation
    raise GraphQLError(f"Unknown operation named {operation_name!r}.")


class GraphQLHTTP:
    """The GraphQL endpoint: GET (queries only), POST, and GraphiQL for browsers."""

    def __init__(self, schema: strawberry.Schema, *, graphiql: bool = True) -> None:
        self.schema = schema
        self.documents = DocumentCache(schema)
        self.graphiql = graphiql
        self.executor = Executor(schema)

    async def __call__(self, request: Request, context: Context) -> Response:
        if self.graphiql and wants_ide(request):
            return HTMLResponse(get_graphql_ide_html())
        media = negotiate(request.headers.get("accept"))
        if media is None:
            return _respond(
                JSON,
                {"errors": [{"message": f"Not acceptable: send Accept: {GRAPHQL_RESPONSE}."}]},
                406,
            )
        try:
            params = await parse_request(request)
            prepared = self.documents.get(params.query)
            if prepared.document is None or prepared.errors:
                return _request_errors(media, prepared.errors)
            operation = select_operation(prepared.document, params.operation_name)
            if request.method == "GET" and operation.operation is not OperationType.QUERY:
                raise RequestError(
                    f"A {operation.operation.value} cannot run over GET; use POST.",
                    status=405,
                    headers={"allow": "POST"},
                )
        except RequestError as error:
            return _respond(
                media, {"errors": [{"message": str(error)}]}, error.status, error.headers
            )
        except GraphQLError as error:
            return _request_errors(media, [error])

        result = await self.executor.execute(
            prepared.document,
            context,
            variables=params.variables,
            operation_name=params.operation_name,
            extensions=params.extensions,
        )
        errors = [format_error(e) for e in result.errors or ()]
        if result.data is None and errors and all("path" not in e for e in errors):
            # Variable coercion failed: a request error, so there is no data entry.
            return _request_errors(media, result.errors or [])
        payload: dict[str, Any] = {"data": result.data}
        if errors:
            payload["errors"] = errors
        if context.stale:
            payload["extensions"] = {"stale": context.stale}
        return _respond(media, payload, 200)


def _request_errors(media: str, errors: list[GraphQLError]) -> Response:
    """The response to GraphQL request errors: nothing ran, so there is no `data` entry."""
    status = 400 if media == GRAPHQL_RESPONSE else 200
    return _respond(media, {"errors": [format_error(e) for e in errors]}, status)


def _respond(
    media: str, payload: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload),
        status_code=status,
        media_type=f"{media}; charset=utf-8",
        headers=headers,
    )
