"""Compact, safe serialisation of source records for the cache.

Values are JSON (orjson) with a small tagged form for records, dates and maps. Decoding only
ever builds the registered record types, so reading an entry cannot execute code (unlike
pickle). The key prefix carries a hash of every record's shape: a deploy that changes an
entity's fields reads none of the previous deploy's entries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any

import orjson

from sources.catalog import SOURCES
from sources.paging import Page, PageKey, Position

# Every declared source's records (`sources.catalog`), then the pages loaders hand out.
RECORD_TYPES: tuple[type[Any], ...] = (
    *(record for source in SOURCES for record in source.records),
    Page,
    Position,
)
_BY_NAME = {t.__name__: t for t in RECORD_TYPES}


class CodecError(ValueError):
    """An entry that is not a value this version of c360 wrote."""


def shape_version() -> str:
    """A short hash of every record type's name and fields (with their annotations)."""
    shape = ";".join(
        f"{t.__name__}({','.join(f'{f.name}:{f.type}' for f in dataclasses.fields(t))})"
        for t in RECORD_TYPES
    )
    return hashlib.sha256(shape.encode()).hexdigest()[:10]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return {"~t": value.isoformat()}
    if isinstance(value, dt.date):
        return {"~d": value.isoformat()}
    if isinstance(value, dict):
        return {"~m": {str(k): _plain(v) for k, v in value.items()}}
    name = type(value).__name__
    if _BY_NAME.get(name) is type(value):
        return {"~": name, "v": [_plain(getattr(value, f.name)) for f in dataclasses.fields(value)]}
    raise CodecError(f"cannot cache a {type(value).__name__}")


def _value(plain: Any) -> Any:
    if plain is None or isinstance(plain, str | int | float | bool):
        return plain
    if isinstance(plain, list):
        return [_value(v) for v in plain]
    if isinstance(plain, dict):
        if "~t" in plain:
            return dt.datetime.fromisoformat(plain["~t"])
        if "~d" in plain:
            return dt.date.fromisoformat(plain["~d"])
        if "~m" in plain:
            return {k: _value(v) for k, v in plain["~m"].items()}
        record = _BY_NAME.get(plain.get("~", ""))
        if record is not None:
            return record(*(_value(v) for v in plain["v"]))
    raise CodecError("unknown cache entry shape")


def encode(value: Any) -> bytes:
    """The bytes of a cacheable value (a record, a list of them, a page, None, ...)."""
    return orjson.dumps(_plain(value))


def decode(data: bytes) -> Any:
    """The value `encode` made; CodecError for anything else."""
    try:
        return _value(orjson.loads(data))
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as error:
        raise CodecError(str(error)) from error


# What marks the names the response cache derives from cache keys and tags (`<name>#r`, and
# `<tag>#gone`): never in a key's text, whose parts are escaped (a client names some keys: a
# product's sku in an `_entities` representation).
MARK = "#"
# The response cache files an answer under what it read: the names of the entity cache's
# entries and owner tags, with this mark (`sources.cache.responses`).
RESPONSE_TAG = f"{MARK}r"


def _text(part: object) -> str:
    return str(part).replace("%", "%25").replace(MARK, "%23")


def key_text(key: Any) -> str:
    """A loader key as text for a cache key: ids, tuples and page keys."""
    if type(key) is int:  # most keys: digits need no escaping
        return str(key)
    if isinstance(key, PageKey):
        after = f"{key.after.at.isoformat()}/{key.after.id}" if key.after else "-"
        filters = ",".join(_text(f) for f in key.filters)
        return f"{_text(key.owner)}|{key.first}|{_text(after)}|{filters}"
    if isinstance(key, tuple):
        return "|".join("-" if part is None else _text(part) for part in key)
    return _text(key)


def owner_of(key: Any) -> str:
    """The entity a key belongs to, for invalidating every page of one owner at once."""
    if isinstance(key, PageKey):
        return _text(key.owner)
    if isinstance(key, tuple):
        return _text(key[0])
    return _text(key)


TOMBSTONE = b"T"


def encode_entry(value: Any, written_at: float, fresh_until: float) -> bytes:
    """An entry as stored in Redis: when it was written, until when it is fresh, the value."""
    return orjson.dumps([written_at, fresh_until, _plain(value)])


def decode_entry(data: bytes) -> tuple[Any, float, float]:
    """(value, written_at, fresh_until) of an entry `encode_entry` made."""
    try:
        written_at, fresh_until, plain = orjson.loads(data)
        return _value(plain), float(written_at), float(fresh_until)
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as error:
        raise CodecError(str(error)) from error
