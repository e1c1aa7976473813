"""Every source c360 reads, declared once (see `sources.declaration`).

A new vendor API is declared in its own module beside its records and listed in `VENDORS`;
settings, the cache codec, round trips, /readyz, /metrics and the bench pick it up from here.
"""

from __future__ import annotations

from sources.declaration import Source, VendorAPI
from sources.mongo.source import MONGO
from sources.sql.source import SQL
from sources.thirdparty.loyalty import LOYALTY
from sources.thirdparty.tracking import TRACKING

VENDORS: tuple[VendorAPI, ...] = (LOYALTY, TRACKING)
# In this order in every report (round trips, bench columns, /readyz).
SOURCES: tuple[Source, ...] = (SQL, MONGO, *VENDORS)
NAMES: tuple[str, ...] = tuple(source.name for source in SOURCES)

if len(set(NAMES)) != len(NAMES):
    raise RuntimeError(f"two sources share a name: {NAMES}")
# The cache codec knows records by their class name.
_RECORDS = [record.__name__ for source in SOURCES for record in source.records]
if len(set(_RECORDS)) != len(_RECORDS):
    raise RuntimeError(f"two record types share a name: {sorted(_RECORDS)}")
