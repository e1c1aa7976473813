"""The response cache at the GraphQL endpoint: which operations it answers, for whose view,
and what a served answer records again.

An answer is kept per caller's *view*, what decides every mask and refusal: the roles, the
scopes, and for a `customer` principal its customer id. Two principals with the same view
share answers; two views never do. Only queries whose root fields read through the entity
cache's loaders alone are kept (`CACHEABLE_ROOTS`; a field outside it, such as `auditLog` or
introspection, leaves the whole operation uncached), and only answers without errors other
than FORBIDDEN and without stale values. A served answer records the same PII audit entries
its execution recorded, for the principal it is served to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)

from api.connections import Connections
from domain.principal import Principal
from resolvers.context import Context
from sources.cache.responses import Answer, ResponseCache

# Root fields whose answers come from the entity cache's loaders only: an event that changes
# what they read invalidates it. `customerLookup` and `searchCustomers` read through loaders
# the entity cache does not cover, so their answers are never kept anyway (`Reads`).
CACHEABLE_ROOTS = frozenset({"customer", "customers", "_entities", "__typename"})

# The packages whose code makes answers (`code_version`).
_CODE = ("api", "resolvers", "sources")

# A request asks to be told whether it was served from the cache with this header.
REPORT_HEADER = "x-c360-cache"
REPORT = "report"


def bypassed(cache_control: str | None) -> bool:
    """Whether a request's `Cache-Control` asks for a fresh answer (`no-cache`, as an agent's
    refresh would): it is executed, and neither served from nor kept in the cache."""
    return cache_control is not None and "no-cache" in cache_control.lower()


def cacheable(document: DocumentNode, operation: OperationDefinitionNode) -> bool:
    """Whether the response cache may answer `operation`: a query of cacheable root fields
    that reads something (`{ __typename }` alone is cheaper to answer than to look up)."""
    if operation.operation is not OperationType.QUERY:
        return False
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    roots = _root_fields(operation.selection_set, fragments, set())
    return roots is not None and bool(roots - {"__typename"})


def _root_fields(
    selections: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    seen: set[str],
) -> set[str] | None:
    """The names of the root fields selected, or None when one of them is not cacheable."""
    names: set[str] = set()
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
            continue
        if isinstance(selection, InlineFragmentNode):
            inner = _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in seen:
                continue
            seen.add(name)
            fragment = fragments.get(name)
            inner = (
                None if fragment is None else _root_fields(fragment.selection_set, fragments, seen)
            )
        else:
            inner = None
        if inner is None:
            return None
        names |= inner
    return names if names <= CACHEABLE_ROOTS else None


def code_version(schema: strawberry.Schema) -> str:
    """What answers were made by: the schema and every module that reads, masks or refuses.
    A deploy that changes any of them keeps none of the previous deploy's answers (instances
    of both, sharing Redis during a rolling deploy, keep their own)."""
    digest = hashlib.sha256(str(schema).encode())
    root = Path(__file__).resolve().parent.parent
    for package in _CODE:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def view(principal: Principal) -> tuple[Any, ...]:
    """What decides every mask and refusal of an answer for `principal`."""
    return (
        sorted(principal.roles),
        sorted(principal.scopes),
        principal.customer_id if principal.is_customer else None,
    )


def answer_key(
    responses: ResponseCache,
    version: str,
    query: str,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    principal: Principal,
) -> str:
    return responses.key(version, query, operation_name, variables, view(principal))


@dataclass(frozen=True, slots=True)
class Miss:
    """An operation the cache may answer but did not: where and whether its answer is kept."""

    responses: ResponseCache
    key: str
    read_at: float | None  # when the cache was read; None when it could not be (keep nothing)
    report: bool

    async def kept(self, context: Context, payload: dict[str, Any]) -> bytes:
        """The executed answer's bytes, kept first when it may be."""
        body = orjson.dumps(payload)
        if self.read_at is not None and _keepable(payload):
            reads = self.responses.reads(context.request_loaders.made())
            if reads is not None:
                answer = Answer(body, tuple(context.audit_reads))
                await self.responses.put(self.key, answer, reads, self.read_at)
        return _reported(body, "miss") if self.report else body


async def served(
    responses: ResponseCache,
    key: str,
    connections: Connections,
    principal: Principal,
    request_id: str,
    report: bool,
) -> bytes | Miss:
    """The kept answer of `key`, its audit entries recorded for `principal`; on a miss, what
    keeps the executed answer."""
    lookup = await responses.get(key)
    answer = lookup.answer
    if answer is None:
        return Miss(responses, key, lookup.read_at, report)
    for customer_id, field_name in answer.audit:
        connections.audit.record(
            request_id=request_id,
            principal=principal,
            customer_id=customer_id,
            field_name=field_name,
        )
    return _reported(answer.body, "hit") if report else answer.body


def _keepable(payload: dict[str, Any]) -> bool:
    """An answer with data, no stale value, and no error but refusals (which are the view's
    own, and the same each time)."""
    if payload.get("data") is None or "extensions" in payload:
        return False
    return all(
        (error.get("extensions") or {}).get("code") == "FORBIDDEN"
        for error in payload.get("errors", ())
    )


def _reported(body: bytes, outcome: str) -> bytes:
    payload = orjson.loads(body)
    payload.setdefault("extensions", {})["cache"] = outcome
    return orjson.dumps(payload)
