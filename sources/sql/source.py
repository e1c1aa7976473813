"""The SQL system of record, as the rest of c360 knows it (see `sources.declaration`)."""

from __future__ import annotations

from sources.declaration import Source
from sources.sql.records import (
    AddressRecord,
    CustomerRecord,
    OrderLineRecord,
    OrderRecord,
    ProductRecord,
)

SQL = Source(
    name="sql",
    title="the SQL system of record",
    records=(CustomerRecord, AddressRecord, ProductRecord, OrderRecord, OrderLineRecord),
    ttl=300.0,
    timeout=2.0,
)
