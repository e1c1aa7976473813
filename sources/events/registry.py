"""The schema registry: every event type c360 accepts, its JSON Schemas and their versions.

Schemas live beside this module as `schemas/<type>/v<N>.json` (JSON Schema draft 2020-12) and
are all loaded and checked when a registry is built, so a broken schema stops the app from
starting instead of rejecting events one by one. The highest version of a type is its current
one; an event may name an older version in `dataschema` and is then validated against that.

`validate` checks the CloudEvents envelope as well as `data` and answers with every reason it
finds, in words a producer can act on: they are returned to the sender and kept with the event
in the dead-letter store.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

# jsonschema ships no type information (types-jsonschema is a separate package): its few
# objects used here are typed as Any, and the functions below state what they return.
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError, ValidationError  # type: ignore[import-untyped]

from sources.events.envelope import SPEC_VERSION
from sources.storable import holds_nul

SCHEMA_URN_PREFIX = "urn:c360:schema:"
# The attributes the CloudEvents spec and c360 define; any other name is an extension.
CONTEXT_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
)
# An event id is c360's idempotency key, kept in the outbox's 64-character event_id column.
MAX_ID_CHARS = 64
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.json$")
# The customer id: digits, short enough for a 64-bit key.
_CUSTOMER_ID = re.compile(r"^[1-9][0-9]{0,17}$")
# RFC 3339 with an upper-case T and Z, the forms `datetime.fromisoformat` (and so
# `Event.from_json`) reads back; range errors (a 30th of February) are caught by parsing.
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
# CloudEvents 1.0: extension names are lower-case ASCII letters and digits.
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_JSON_MEDIA = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")
# An enum longer than this is named by its size in reasons, not listed (ISO country codes).
_ENUM_LISTED = 12
_SHOWN_CHARS = 60
_MESSAGE_CHARS = 200


class SchemaRegistryError(Exception):
    """A schema file that is missing, unreadable or not a valid JSON Schema."""


def is_rfc3339(value: object) -> bool:
    """Whether `value` is an RFC 3339 date-time with an offset (non-strings pass, as formats do)."""
    if not isinstance(value, str):
        return True
    if _RFC3339.match(value) is None:
        return False
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    # jsonschema only checks date-time when the optional rfc3339-validator is installed, and
    # silently accepts anything otherwise: c360 brings its own check instead of that package.
    checker.checks("date-time")(is_rfc3339)
    return checker


def dataschema_uri(type: str, version: int) -> str:
    """The `dataschema` URI of one version of an event type."""
    return f"{SCHEMA_URN_PREFIX}{type}:v{version}"


@dataclass(frozen=True, slots=True)
class _Schema:
    version: int
    uri: str
    validator: Draft202012Validator


class SchemaRegistry:
    """Every registered event type with its schema versions, loaded once from the package."""

    def __init__(self, root: Traversable | None = None) -> None:
        root = root if root is not None else resources.files(__package__ or "").joinpath("schemas")
        checker = _format_checker()
        self._types: dict[str, dict[int, _Schema]] = {}
        for folder in sorted(root.iterdir(), key=lambda entry: entry.name):
            if not folder.is_dir():
                continue
            versions = {schema.version: schema for schema in _load_type(folder, checker=checker)}
            if not versions:
                raise SchemaRegistryError(f"schemas/{folder.name} holds no v<N>.json schema")
            self._types[folder.name] = versions
        if not self._types:
            raise SchemaRegistryError(f"no event schemas found under {root}")

    @property
    def types(self) -> list[str]:
        """The registered event types, sorted."""
        return sorted(self._types)

    def versions(self, type: str) -> list[int]:
        """The schema versions of a type, oldest first."""
        return sorted(self._versions(type))

    def current_version(self, type: str) -> int:
        """The version new events of this type are validated against by default."""
        return max(self._versions(type))

    def dataschema(self, type: str, version: int | None = None) -> str:
        """The `dataschema` URI of a type's version (its current one when not given)."""
        versions = self._versions(type)
        return versions[version if version is not None else max(versions)].uri

    def schema(self, type: str, version: int | None = None) -> dict[str, Any]:
        """The JSON Schema document of a type's version (its current one when not given)."""
        versions = self._versions(type)
        document: dict[str, Any] = versions[
            version if version is not None else max(versions)
        ].validator.schema
        return document

    def validate(self, event_json: Any) -> list[str]:
        """Why a structured-mode event is not acceptable; an empty list when it is."""
        if not isinstance(event_json, dict):
            return [f"an event must be a JSON object, not {json_kind(event_json)}"]
        reasons = _envelope_reasons(event_json)
        if holds_nul(event_json):
            reasons.append("no string may hold a NUL character (U+0000), which c360 cannot store")
        type = event_json.get("type")
        if not isinstance(type, str) or not type:
            return reasons
        versions = self._types.get(type)
        if versions is None:
            reasons.append(f"type {_shown(type)} is not a registered event type")
            return reasons
        schema = versions[max(versions)]
        dataschema = event_json.get("dataschema")
        if dataschema is not None:
            named = next((s for s in versions.values() if s.uri == dataschema), None)
            if named is None:
                known = ", ".join(versions[v].uri for v in sorted(versions))
                reasons.append(
                    f"dataschema {_shown(dataschema)} is not a known version of {type} "
                    f"(known: {known})"
                )
                return reasons
            schema = named
        if "data" not in event_json:
            reasons.append("data is required: a JSON object")
        elif not isinstance(event_json["data"], dict):
            reasons.append(f"data must be a JSON object, not {json_kind(event_json['data'])}")
        else:
            reasons.extend(_data_reasons(schema.validator, event_json["data"]))
        return reasons

    def _versions(self, type: str) -> dict[int, _Schema]:
        try:
            return self._types[type]
        except KeyError:
            raise KeyError(f"{type!r} is not a registered event type") from None


def _load_type(folder: Traversable, *, checker: FormatChecker) -> Iterator[_Schema]:
    for file in folder.iterdir():
        match = _VERSION_FILE.match(file.name)
        if match is None:
            continue
        version = int(match.group(1))
        where = f"schemas/{folder.name}/{file.name}"
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(document)
        except (OSError, ValueError, SchemaError) as error:
            raise SchemaRegistryError(f"{where}: {error}") from error
        uri = dataschema_uri(folder.name, version)
        if document.get("$id") != uri:
            raise SchemaRegistryError(f"{where}: $id must be {uri!r}")
        if document.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
            raise SchemaRegistryError(f"{where}: $schema must name draft 2020-12")
        yield _Schema(version, uri, Draft202012Validator(document, format_checker=checker))


def _envelope_reasons(event: dict[str, Any]) -> list[str]:
    reasons: list[str] = []
    specversion = event.get("specversion")
    if specversion != SPEC_VERSION:
        reasons.append(
            f'specversion must be "{SPEC_VERSION}"'
            + ("" if specversion is None else f" (got {_shown(specversion)})")
        )
    for name in ("id", "source", "type"):
        value = event.get(name)
        if value is None:
            reasons.append(f"{name} is required")
        elif not isinstance(value, str) or not value:
            reasons.append(f"{name} must be a non-empty string (got {_shown(value)})")
    event_id = event.get("id")
    if isinstance(event_id, str) and len(event_id) > MAX_ID_CHARS:
        reasons.append(f"id must be at most {MAX_ID_CHARS} characters (got {len(event_id)})")
    subject = event.get("subject")
    if subject is None:
        reasons.append("subject is required: the customer id, a string of digits")
    elif not isinstance(subject, str) or _CUSTOMER_ID.match(subject) is None:
        reasons.append(
            f"subject must be the customer id, a string of digits (got {_shown(subject)})"
        )
    time = event.get("time")
    if time is None:
        reasons.append("time is required: an RFC 3339 timestamp, e.g. 2026-11-22T09:30:00Z")
    elif not isinstance(time, str) or not is_rfc3339(time):
        reasons.append(
            f"time must be an RFC 3339 timestamp with an offset, e.g. 2026-11-22T09:30:00Z "
            f"(got {_shown(time)})"
        )
    media = event.get("datacontenttype")
    if media is not None and (
        not isinstance(media, str)
        or _JSON_MEDIA.match(media.partition(";")[0].strip().lower()) is None
    ):
        reasons.append(f"datacontenttype must be application/json (got {_shown(media)})")
    dataschema = event.get("dataschema")
    if dataschema is not None and not isinstance(dataschema, str):
        reasons.append(f"dataschema must be a string (got {_shown(dataschema)})")
    for name, value in event.items():
        if name in CONTEXT_ATTRIBUTES or name in ("data", "data_base64"):
            continue
        if _EXTENSION_NAME.match(name) is None:
            reasons.append(
                f"attribute {_shown(name)} is not a valid extension name "
                "(lower-case letters and digits, at most 20)"
            )
        elif not isinstance(value, str | int | bool):
            reasons.append(
                f"extension {name} must be a string, integer or boolean, not {json_kind(value)}"
            )
    if "data_base64" in event:
        reasons.append("data_base64 is not accepted: send the data as a JSON object in data")
    return reasons


def _data_reasons(validator: Draft202012Validator, data: dict[str, Any]) -> list[str]:
    # Sorted, so a producer reads the reasons in the order of the fields they name.
    return sorted({reason for error in validator.iter_errors(data) for reason in _describe(error)})


def _location(error: ValidationError) -> str:
    where = "data"
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def _describe(error: ValidationError) -> list[str]:
    """One error in words; jsonschema's own messages repeat whole instances and Python reprs."""
    where = _location(error)
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if keyword == "required" and isinstance(instance, dict):
        return [f"{where}.{name} is required" for name in expected if name not in instance]
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = schema.get("properties", {})
        return [f"{where}.{name} is not a known field" for name in instance if name not in known]
    message: str
    if keyword in ("anyOf", "oneOf"):
        # The "one of these fields" rules (email or phone; order id or number).
        if all(isinstance(a, dict) and set(a) == {"required"} for a in expected):
            message = "needs " + " or ".join(n for a in expected for n in a["required"])
        else:
            message = "does not match any allowed form"
    elif keyword == "enum":
        message = f"{_shown(instance)} is not " + (
            f"one of the {len(expected)} allowed values"
            if len(expected) > _ENUM_LISTED
            else "one of " + ", ".join(str(v) for v in expected)
        )
    elif keyword == "format" and expected == "date-time":
        message = f"{_shown(instance)} is not an RFC 3339 timestamp (e.g. 2026-11-22T09:30:00Z)"
    elif keyword == "format":
        message = f"{_shown(instance)} is not a valid {expected}"
    elif keyword == "pattern":
        message = f"{_shown(instance)} is not valid" + (
            f": {schema['description']}" if "description" in schema else f" (pattern {expected})"
        )
    elif keyword == "type":
        message = f"must be {_type_words(expected)}, not {json_kind(instance)}"
    elif keyword == "minLength" and expected == 1:
        message = "must not be empty"
    elif keyword in ("minLength", "maxLength"):
        bound = "at least" if keyword == "minLength" else "at most"
        message = f"must be {bound} {expected} characters long"
    elif keyword in ("minItems", "maxItems", "minProperties", "maxProperties"):
        bound = "at least" if keyword.startswith("min") else "at most"
        noun = "items" if keyword.endswith("Items") else "entries"
        message = f"must hold {bound} {expected} {noun}"
    else:
        message = error.message
        if len(message) > _MESSAGE_CHARS:
            message = message[: _MESSAGE_CHARS - 1] + "…"
    return [f"{where}: {message}"]


def _type_words(expected: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    words = {"object": "an object", "array": "an array", "integer": "an integer"}
    return " or ".join(words.get(n, f"a {n}") for n in names)


def json_kind(value: Any) -> str:
    """What kind of JSON value `value` is, with its article ("an array"), for reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _shown(value: Any) -> str:
    """A value as JSON, cut short: reasons are read by people and stored with the event."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"
