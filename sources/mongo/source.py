"""The MongoDB engagement store, as the rest of c360 knows it (see `sources.declaration`)."""

from __future__ import annotations

from sources.declaration import Source
from sources.mongo.records import (
    ConsentRecord,
    IdentityRecord,
    InteractionRecord,
    ProfileRecord,
    TicketEventRecord,
    TicketRecord,
)

MONGO = Source(
    name="mongo",
    title="the MongoDB engagement store",
    records=(
        ProfileRecord,
        ConsentRecord,
        IdentityRecord,
        InteractionRecord,
        TicketRecord,
        TicketEventRecord,
    ),
    ttl=120.0,
    timeout=2.0,
)
