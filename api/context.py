"""Building a request's context (`resolvers.context.Context`) from the process's connections."""

from __future__ import annotations

import functools

from api.connections import Connections
from api.subscriptions import live_subscription
from domain.principal import ANONYMOUS, Principal
from resolvers.context import Context, Loaders
from sources.mongo.loaders import MongoLoaders
from sources.mongo.source import MONGO
from sources.sql.loaders import SqlLoaders
from sources.sql.source import SQL
from sources.thirdparty.loaders import VendorLoaders


def create_loaders(connections: Connections) -> Loaders:
    """Loaders for one request; each caches its keys for that request, so never share them."""
    settings = connections.settings
    cache = connections.cache
    return Loaders(
        sql=SqlLoaders(connections.reads, settings.source_timeout(SQL.name), cache),
        mongo=MongoLoaders(connections.db, settings.source_timeout(MONGO.name), cache),
        vendor=VendorLoaders(connections.vendors, cache=cache),
    )


def create_context(
    connections: Connections,
    *,
    principal: Principal = ANONYMOUS,
    request_id: str = "",
    loaders: Loaders | None = None,
) -> Context:
    """The context of one GraphQL operation (on `loaders`, or new ones)."""
    return Context(
        settings=connections.settings,
        connections=connections,
        request_loaders=loaders or create_loaders(connections),
        new_loaders=functools.partial(create_loaders, connections),
        admission=live_subscription,
        principal=principal,
        request_id=request_id,
    )
