"""The per-request context every resolver receives: who asks, the settings resolvers read,
the stores, the loaders.

It is declared here, beside the resolvers, and built by `api.context` from the process's
connections and settings: the two Protocols below say what of those the resolvers may use, so
this layer does not import `api`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.websockets import WebSocket

from domain.audit import AuditLog
from domain.changes import Changes
from domain.principal import ANONYMOUS, Principal
from sources.dataloader import DataLoader
from sources.events.hub import Hub
from sources.mongo.loaders import MongoLoaders
from sources.mongo.queries import Database
from sources.sql.idempotency import Claim
from sources.sql.loaders import SqlLoaders
from sources.thirdparty.loaders import VendorLoaders


@dataclass(frozen=True, slots=True)
class Loaders:
    """Every loader of one request; built fresh so nothing is cached across requests."""

    sql: SqlLoaders
    mongo: MongoLoaders
    vendor: VendorLoaders

    def made(self) -> Iterator[DataLoader[Any, Any]]:
        """The loaders this request has used (each is made on first use)."""
        for group in (self.sql, self.mongo, self.vendor):
            for value in vars(group).values():
                if isinstance(value, DataLoader):
                    yield value


# A WebSocket's context lives as long as the connection, but loaders must not outlive one
# result: a subscription sets fresh ones here for each event it delivers (each operation runs
# in its own task, so the value is the operation's own).
_operation_loaders: ContextVar[Loaders | None] = ContextVar("operation_loaders", default=None)


class Settings(Protocol):
    """The settings resolvers read (`api.settings.Settings` has them)."""

    @property
    def page_default(self) -> int: ...
    @property
    def page_max(self) -> int: ...
    @property
    def batch_keys_max(self) -> int: ...
    @property
    def phone_region(self) -> str: ...
    @property
    def websocket_max_subscriptions(self) -> int: ...


class Stores(Protocol):
    """The connections resolvers use (`api.connections.Connections` has them)."""

    @property
    def engine(self) -> AsyncEngine: ...
    @property
    def db(self) -> Database: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def changes(self) -> Changes: ...
    @property
    def audit(self) -> AuditLog: ...


# Counts a subscription against its socket's and principal's limits while it runs.
Admission = Callable[["Context"], AbstractAsyncContextManager[None]]


@dataclass(slots=True)
class Context:
    settings: Settings
    connections: Stores
    request_loaders: Loaders
    # Makes a request's loaders: for a subscription's fresh ones per event.
    new_loaders: Callable[[], Loaders]
    # Set where subscriptions run (`api.subscriptions.live_subscription`).
    admission: Admission | None = None
    # Set once the request is authenticated; on a WebSocket, by its connection_init.
    principal: Principal = ANONYMOUS
    # Names this request (or WebSocket operation) in the audit log and in the logs.
    request_id: str = ""
    # The connection_init payload of a WebSocket (where its credentials come from).
    connection_params: dict[str, Any] | None = None
    # The WebSocket this context belongs to; None over HTTP.
    websocket: WebSocket | None = None
    # Values served stale from the cache because their source failed: reported in the
    # response's `extensions.stale` as {"path": [...], "ageSeconds": N}.
    stale: list[dict[str, Any]] = field(default_factory=list)
    # The subscriptions running on this context's WebSocket (its context lives as long).
    subscriptions: set[object] = field(default_factory=set)
    # The clear-text PII reads this request recorded, (customer id, "Type.field"): what an
    # answer kept by the response cache records again each time it is served.
    audit_reads: list[tuple[int, str]] = field(default_factory=list)
    # The Idempotency-Key this request (a mutation) holds, if it sent one.
    idempotency: Claim | None = None
    # Set by a mutation whose answer asks the client to retry (MERGE_IN_PROGRESS): that answer
    # is not kept for the key, whose retry runs again.
    retry_invited: bool = False
    # While set, clear-text reads are kept in `audit_reads` only, not written to the audit log:
    # an execution that may be run again (`api.engine.optimistic`) runs on a copy that holds
    # them, and they are the request's (`take_audit`) only once that execution stands.
    audit_held: bool = False

    @property
    def loaders(self) -> Loaders:
        return _operation_loaders.get() or self.request_loaders

    def use_fresh_loaders(self) -> None:
        """Give the current operation new, empty loaders (a subscription does, per event)."""
        _operation_loaders.set(self.new_loaders())

    def admitted(self) -> AbstractAsyncContextManager[None]:
        """Held while a subscription runs: its admission, where one is set."""
        if self.admission is None:
            return contextlib.nullcontext()
        return self.admission(self)

    @property
    def changes(self) -> Changes:
        """What a mutation changes data through: under the request's idempotency key."""
        return self.connections.changes.holding(self.idempotency)

    def audit_read(self, customer_id: int, type_name: str, field_name: str) -> None:
        """Record that this request read one PII field of a customer in clear."""
        self._read(customer_id, f"{type_name}.{field_name}")

    def take_audit(self, reads: list[tuple[int, str]]) -> None:
        """Clear-text reads a copy of this context held (`audit_held`): this request's now."""
        for customer_id, name in reads:
            self._read(customer_id, name)

    def _read(self, customer_id: int, name: str) -> None:
        self.audit_reads.append((customer_id, name))
        if not self.audit_held:
            self.connections.audit.record(
                request_id=self.request_id,
                principal=self.principal,
                customer_id=customer_id,
                field_name=name,
            )
