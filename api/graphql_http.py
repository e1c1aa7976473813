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

Over 400 lines: the endpoint is one request's way through the spec (method, media types,
parameters, the document cache, admission, the response cache, execution, status codes); each
step is a short function and they are read in order."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    parse,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response

from api import answers, ide, idempotency
from api.access import Noted, request_id, request_trace_id
from api.admission import Refusal, may_explore
from api.at_once import Done, started
from api.connections import Connections
from api.context import create_context
from api.documents import document_hash
from api.execution import Executor
from api.guard import CallerRefusedError, Guard
from api.limits import QUERY_TOO_COMPLEX, too_many_tokens
from api.logs import REQUEST_ID, LogFormat
from api.settings import Settings
from api.turns import Turns
from domain.principal import Principal
from resolvers.context import Context
from resolvers.errors import PARSE_FAILED, format_error, request_errors, with_code
from sources import tracing
from sources.sql.idempotency import Claim, Replay

log = logging.getLogger(__name__)

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
MAX_CACHED_DOCUMENTS = 1024
# No operation of the document to run by the name given (Apollo Server's code).
OPERATION_RESOLUTION_FAILURE = "OPERATION_RESOLUTION_FAILURE"
# How graphql-core's parser ends the message of a document over its token limit.
OVER_TOKEN_LIMIT = " tokens. Parsing aborted."


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
    query: str | None
    operation_name: str | None
    variables: dict[str, Any] | None
    extensions: dict[str, Any] | None


class DocumentCache:
    """Parsed documents by query text (validation depends on the caller: `api.admission`)."""

    def __init__(self, max_tokens: int, size: int = MAX_CACHED_DOCUMENTS) -> None:
        self._max_tokens = max_tokens
        self._size = size
        self._entries: OrderedDict[str, DocumentNode | GraphQLError] = OrderedDict()

    def get(self, query: str) -> DocumentNode:
        """The parsed document, or the GraphQLError of a syntax error (GRAPHQL_PARSE_FAILED) or
        too many tokens (QUERY_TOO_COMPLEX)."""
        entry = self._entries.get(query)
        if entry is None:
            try:
                entry = parse(query, max_tokens=self._max_tokens)
            except GraphQLSyntaxError as error:
                entry = (
                    too_many_tokens(self._max_tokens)
                    if error.message.endswith(OVER_TOKEN_LIMIT)
                    else with_code(error, PARSE_FAILED)
                )
            self._entries[query] = entry
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(query)
        if isinstance(entry, GraphQLError):
            raise entry
        return entry


# Queries only, from the query string; HEAD is GET without the body (RFC 9110).
SAFE_METHODS = ("GET", "HEAD")


# A client sends the same Accept header on every request: each is parsed once.
@functools.lru_cache(maxsize=256)
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
        request.method in SAFE_METHODS
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
    """Validate the request parameters (query, operationName, variables, extensions).

    `query` may be absent when `extensions.persistedQuery` names it by hash.
    """
    if not isinstance(raw, dict):
        raise RequestError("The request body must be a JSON object.")
    query = raw.get("query")
    if query is not None and not isinstance(query, str):
        raise RequestError("`query` must be a string.")
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


async def read_request(request: Request, max_bytes: int) -> Any:
    """The raw parameters of a GET query string, or the JSON of a POST body (object or array).

    Only `application/json` is read: form-encoded, multipart and text/plain bodies, which a
    browser may send cross-site without a preflight, are refused (CSRF).
    """
    if request.method in SAFE_METHODS:
        return {
            "query": request.query_params.get("query"),
            "operationName": request.query_params.get("operationName"),
            "variables": _json_param(request, "variables"),
            "extensions": _json_param(request, "extensions"),
        }
    content_type = request.headers.get("content-type")
    if content_type is None:
        raise RequestError("A POST needs `Content-Type: application/json`.", status=415)
    media = content_type.partition(";")[0].strip().lower()
    if media != JSON:
        raise RequestError(
            f"Unsupported Content-Type {media!r}; send application/json.", status=415
        )
    body = await _read_body(request, max_bytes)
    if not body:
        raise RequestError("The POST body is empty; send a JSON object with a `query`.")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError("The request body is not valid JSON.") from error
    return raw


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    # Read from `receive` itself: Starlette's `Request.stream` is an async generator, and
    # stepping one costs more than the one message a small POST arrives in.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(max_bytes: int) -> RequestError:
    return RequestError(f"The request body is over {max_bytes:,} bytes.", status=413)


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
                "The document has several operations: name the one to run in `operationName`.",
                extensions={"code": OPERATION_RESOLUTION_FAILURE},
            )
        return operations[0]
    for operation in operations:
        if operation.name and operation.name.value == operation_name:
            return operation
    raise GraphQLError(
        f"Unknown operation named {operation_name!r}.",
        extensions={"code": OPERATION_RESOLUTION_FAILURE},
    )


class GraphQLHTTP:
    """The GraphQL endpoint: GET (queries only), POST, and GraphiQL for browsers."""

    def __init__(self, schema: strawberry.Schema, settings: Settings) -> None:
        self.schema = schema
        self.settings = settings
        self.documents = DocumentCache(settings.limit_tokens)
        self.executor = Executor(schema, settings.engine)
        self.answers_version = answers.code_version(schema)
        self.turns = Turns()

    async def __call__(self, request: Request, connections: Connections, guard: Guard) -> Response:
        await self.turns.take()
        rid = request_id(request.headers.get("x-request-id"))
        # For an answer the middleware has to make (a failure escaping this endpoint).
        request.state.request_id = rid
        if self.settings.access_log:
            request.state.access = Noted()
        if self.settings.log_format is not LogFormat.JSON:
            return await self._answer(request, connections, guard, rid)
        # JSON log lines written while this request runs carry its id.
        token = REQUEST_ID.set(rid)
        try:
            return await self._answer(request, connections, guard, rid)
        finally:
            REQUEST_ID.reset(token)

    async def _answer(
        self, request: Request, connections: Connections, guard: Guard, rid: str
    ) -> Response:
        headers = {"x-request-id": rid}
        acceptable = negotiate(request.headers.get("accept"))
        media = acceptable or JSON
        ip = request.client.host if request.client else None
        try:
            principal = await guard.identify(
                ip, lambda: guard.authenticator.from_headers(request.headers)
            )
        except CallerRefusedError as refused:
            headers.update(refused.headers)
            return _error(media, str(refused), refused.status, refused.code, headers)
        if self.settings.access_log:
            request.state.access.principal = {
                "kind": principal.kind,
                "id": None if principal.anonymous else principal.name,
                "role": principal.role,
            }
        if wants_ide(request):
            if may_explore(self.settings, principal):
                return HTMLResponse(ide.page(self.settings), headers=headers)
            return _error(
                media,
                "GraphiQL is open to analyst, admin and service principals.",
                403,
                "FORBIDDEN",
                headers,
            )
        if acceptable is None:
            message = f"Not acceptable: send Accept: {GRAPHQL_RESPONSE}."
            return _respond(JSON, request_errors(message, 406), 406, headers)
        try:
            key = _idempotency_key(request)
            raw = await read_request(request, self.settings.max_body_bytes)
            if isinstance(raw, list):
                if key is not None:
                    raise RequestError(
                        "An Idempotency-Key names one operation: send the mutation on its own, "
                        "not in a batch."
                    )
                return await self._batch(raw, request, connections, guard, principal, media, rid)
            params = read_params(raw)
            status, payload = await self._one(
                params, request, connections, guard, principal, media, rid, key, headers
            )
            if asks_trace_id(params):
                payload = with_trace_id(payload, request)
        except RequestError as error:
            headers.update(error.headers)
            return _respond(media, request_errors(str(error), error.status), error.status, headers)
        except ClientDisconnect:
            # The client left while sending its request: no one is listening for an answer.
            return Response(status_code=400, headers=headers)
        return _respond(media, payload, status, headers)

    async def _batch(
        self,
        items: list[Any],
        request: Request,
        connections: Connections,
        guard: Guard,
        principal: Principal,
        media: str,
        rid: str,
    ) -> Response:
        """A JSON array of operations, when batching is on: one result each, in order."""
        if not self.settings.batch_enabled:
            raise RequestError("Batched requests (a JSON array) are turned off; send one object.")
        if not 0 < len(items) <= self.settings.batch_max:
            raise RequestError(f"A batch holds 1 to {self.settings.batch_max} operations.")
        results = []
        for index, item in enumerate(items):
            try:
                if index:
                    await self.turns.take()  # each operation takes its turn, as a request does
                    await guard.count(principal)  # each operation counts, not each POST
                params = read_params(item)
                _, payload = await self._one(
                    params, request, connections, guard, principal, media, f"{rid}.{index}"
                )
                if asks_trace_id(params):
                    payload = with_trace_id(payload, request)
            except RequestError as error:
                payload = request_errors(str(error), error.status)
            except CallerRefusedError as refused:
                payload = request_errors(str(refused), refused.status, refused.code)
            # An answer from the response cache comes as its bytes.
            results.append(orjson.loads(payload) if isinstance(payload, bytes) else payload)
        request.state.operation = "(batch)"
        return Response(
            orjson.dumps(results),
            media_type=f"{media}; charset=utf-8",
            headers={"x-request-id": rid},
        )

    async def _one(
        self,
        params: GraphQLRequest,
        request: Request,
        connections: Connections,
        guard: Guard,
        principal: Principal,
        media: str,
        rid: str,
        key: str | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any] | bytes]:
        """The status and body of one operation (RequestError for a malformed request).

        A mutation with an Idempotency-Key `key` runs once: a retry is answered with the first
        answer's bytes (`response_headers` then say so).
        """
        try:
            resolved = await resolve_query(params, guard, principal)
        except GraphQLError as error:
            return _errors_status(media), {"errors": [format_error(error)]}
        query = resolved.text
        refusal = guard.admission.screen(query, principal)
        if refusal is not None:
            return _refused(refusal, media)
        try:
            with tracing.span("graphql.parse"):
                document = self.documents.get(query)
                operation = select_operation(document, params.operation_name)
        except GraphQLError as error:
            if (error.extensions or {}).get("code") == QUERY_TOO_COMPLEX:
                return _refused(Refusal(400, [error]), media)  # as every other limit
            return _errors_status(media), {"errors": [format_error(error)]}
        name = operation.name.value if operation.name else None
        if self.settings.access_log:
            kind = operation.operation.value
            request.state.access.operations.append(f"{kind} {name}" if name else kind)
        with tracing.span("graphql.validate"):
            refusal = guard.admission.check(query, document, operation, principal)
        if refusal is not None:
            return _refused(refusal, media)
        if request.method in SAFE_METHODS and operation.operation is not OperationType.QUERY:
            raise RequestError(
                f"A {operation.operation.value} cannot run over {request.method}; use POST.",
                status=405,
                headers={"allow": "POST"},
            )
        with tracing.span("graphql.cost"):
            refusal = guard.admission.admit(query, document, operation, principal, params.variables)
        if refusal is not None:
            return _refused(refusal, media)
        tracing.name_operation(operation.operation.value, name)  # admitted: worth its name
        if not principal.anonymous:
            # Its latency is kept under its name (`api.metrics`): only an admitted operation of
            # a known caller may take one of the bounded label slots.
            request.state.operation = name or "(unnamed)"
        if resolved.register is not None and not principal.anonymous:
            # Kept only once admitted, and only for a known caller: the store is not an
            # anonymous scratch space.
            await guard.persisted.put(resolved.register, query)

        responses = connections.responses
        miss: answers.Miss | None = None  # where the response cache keeps what executes
        if (
            responses is not None
            and not answers.bypassed(request.headers.get("cache-control"))
            and answers.cacheable(document, operation)
        ):
            report = self.settings.response_cache_report or (
                request.headers.get(answers.REPORT_HEADER) == answers.REPORT
            )
            cache_key = answers.answer_key(
                responses,
                self.answers_version,
                query,
                params.operation_name,
                params.variables,
                principal,
            )
            found = await answers.served(responses, cache_key, connections, principal, rid, report)
            if isinstance(found, bytes):
                return 200, found
            miss = found

        claim: Claim | None = None
        if key is not None and operation.operation is OperationType.MUTATION:
            held = await idempotency.begin(
                connections,
                principal,
                key,
                idempotency.request_hash(query, params.operation_name, params.variables),
            )
            if isinstance(held, Replay):
                if response_headers is not None:
                    response_headers[idempotency.REPLAYED] = "true"
                return held.status, held.body
            if isinstance(held, idempotency.KeyRefusal):
                if response_headers is not None:
                    response_headers.update(held.headers)
                return held.status, held.payload
            claim = held
        context = create_context(connections, principal=principal, request_id=rid)
        context.idempotency = claim
        with connections.audit.answering(rid), tracing.span("graphql.execute"):
            status, payload = await self._execute(document, params, context, media)
        if miss is not None and status == 200:
            return status, await miss.kept(context, payload)
        if claim is not None:
            await idempotency.end(
                connections, claim, status, payload, final=not context.retry_invited
            )
        return status, payload

    async def _execute(
        self, document: DocumentNode, params: GraphQLRequest, context: Context, media: str
    ) -> tuple[int, dict[str, Any]]:
        """Run an admitted operation: its status and body."""
        principal = context.principal
        deadline = asyncio.get_running_loop().time() + self.settings.execution_timeout
        try:
            step = started(
                self.executor.execute(
                    document,
                    context,
                    variables=params.variables,
                    operation_name=params.operation_name,
                    extensions=params.extensions,
                    hide_suggestions=not may_explore(self.settings, principal),
                )
            )
            if isinstance(step, Done):  # answered without waiting: nothing for a deadline to stop
                result = step.value
            else:
                async with asyncio.timeout_at(deadline):
                    result = await step
        except TimeoutError:
            message = (
                f"The operation ran longer than {self.settings.execution_timeout:g} s and was "
                "stopped; ask for less."
            )
            return 504, {"errors": [{"message": message, "extensions": {"code": "TIMEOUT"}}]}
        formatted = [format_error(e) for e in result.errors or ()]
        if result.data is None and formatted and all("path" not in e for e in formatted):
            # Variable coercion failed: a request error, so there is no data entry.
            return _errors_status(media), {"errors": formatted}
        payload: dict[str, Any] = {"data": result.data}
        if formatted:
            payload["errors"] = formatted
        if context.stale:
            payload["extensions"] = {"stale": context.stale}
        return 200, payload


def asks_trace_id(params: GraphQLRequest) -> bool:
    """Whether the request's `extensions` ask for its trace id (`"traceId": true`)."""
    return params.extensions is not None and params.extensions.get("traceId") is True


def with_trace_id(payload: dict[str, Any] | bytes, request: Request) -> dict[str, Any]:
    """An answer with the request's trace id in its `extensions` (null when the request has
    none: tracing is off and the caller sent no `traceparent`). Added after the response
    cache, which keeps the answer without it: a trace is one request's."""
    answer = orjson.loads(payload) if isinstance(payload, bytes) else payload
    traced = request_trace_id(request.scope, request.headers.get("traceparent"))
    return {**answer, "extensions": {**answer.get("extensions", {}), "traceId": traced}}


@dataclass(frozen=True, slots=True)
class ResolvedQuery:
    text: str
    # The APQ hash to register the text under once the operation is admitted (APQ's second
    # request: hash and text), else None.
    register: str | None = None


async def resolve_query(
    params: GraphQLRequest, guard: Guard, principal: Principal
) -> ResolvedQuery:
    """The query text to run: sent, or found by its hash (APQ or a trusted document).

    A customer-role principal may only run trusted documents when the allow-list is on.
    """
    sha = _persisted_hash(params.extensions)
    query = params.query
    register = None
    if query is not None and sha is not None:
        if document_hash(query) != sha:
            raise RequestError("`persistedQuery.sha256Hash` is not the SHA-256 of `query`.")
        register = sha
    elif query is None:
        if sha is None:
            raise RequestError("`query` is required and must be a string.")
        query = await guard.trusted.get(sha) or await guard.persisted.get(sha)
        if query is None:
            raise GraphQLError(
                "PersistedQueryNotFound", extensions={"code": "PERSISTED_QUERY_NOT_FOUND"}
            )
    if guard.settings.trusted_documents_only and principal.is_customer:
        if await guard.trusted.get(sha or document_hash(query)) is None:
            raise GraphQLError(
                "Only registered documents may run for customer principals: register it with "
                "`c360 documents add` and send its hash.",
                extensions={"code": "DOCUMENT_NOT_TRUSTED"},
            )
    return ResolvedQuery(query, register)


def _persisted_hash(extensions: dict[str, Any] | None) -> str | None:
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise RequestError('`persistedQuery` must be {"version": 1, "sha256Hash": ...}.')
    sha = persisted.get("sha256Hash")
    if not isinstance(sha, str) or len(sha) != 64:
        raise RequestError("`persistedQuery.sha256Hash` must be a SHA-256 hex digest.")
    return sha.lower()


def _refused(refusal: Refusal, media: str) -> tuple[int, dict[str, Any]]:
    status = _errors_status(media) if refusal.status is None else refusal.status
    return status, {"errors": [format_error(e) for e in refusal.errors]}


def _idempotency_key(request: Request) -> str | None:
    try:
        return idempotency.read_key(request.headers)
    except ValueError as error:
        raise RequestError(str(error)) from error


def _errors_status(media: str) -> int:
    """GraphQL request errors: 400 for graphql-response+json, 200 for application/json."""
    return 400 if media == GRAPHQL_RESPONSE else 200


def _error(media: str, message: str, status: int, code: str, headers: dict[str, str]) -> Response:
    return _respond(media, request_errors(message, status, code), status, headers)


def _respond(
    media: str, payload: dict[str, Any] | bytes, status: int, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        payload if isinstance(payload, bytes) else orjson.dumps(payload),
        status_code=status,
        media_type=f"{media}; charset=utf-8",
        headers=headers,
    )
