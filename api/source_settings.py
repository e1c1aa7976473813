"""Settings of each declared source, read from variables named after it.

For every source in `sources.catalog`: `C360_<NAME>_TIMEOUT` (seconds per call) and
`C360_CACHE_TTL_<NAME>` (freshness of its cached entries), and for a vendor API
`C360_<NAME>_URL` (its base URL; unset or blank, the bundled simulator). A source declared
tomorrow gets its variables without a line here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, PositiveFloat, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from pydantic_settings.sources import EnvSettingsSource

from sources.catalog import NAMES, SOURCES
from sources.declaration import Source, VendorAPI


class SourceSettings(BaseModel):
    """One source's settings in force."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout: PositiveFloat
    cache_ttl: PositiveFloat
    # A vendor API's base URL (None: the bundled simulator); stores have URLs of their own.
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None


def variables(source: Source) -> dict[str, str]:
    """The environment variable of each of the source's settings."""
    name = source.name.upper()
    named = {"timeout": f"C360_{name}_TIMEOUT", "cache_ttl": f"C360_CACHE_TTL_{name}"}
    if isinstance(source, VendorAPI):
        named["url"] = url_variable(source)
    return named


def url_variable(api: VendorAPI) -> str:
    """The environment variable that holds a vendor API's base URL."""
    return f"C360_{api.name.upper()}_URL"


def with_declared_defaults(given: object) -> dict[str, object]:
    """Every declared source's settings: what was given over its declaration's defaults."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValueError("per_source maps a source's name to its settings")
    unknown = sorted(set(given) - set(NAMES))
    if unknown:
        raise ValueError(f"no source is named {', '.join(unknown)}; declared: {', '.join(NAMES)}")
    settings: dict[str, object] = {}
    for source in SOURCES:
        entry = given.get(source.name, {})
        if isinstance(entry, SourceSettings):
            entry = entry.model_dump()
        if not isinstance(entry, dict):
            raise ValueError(f"the settings of {source.name} are a mapping")
        if entry.get("url") is not None and not isinstance(source, VendorAPI):
            raise ValueError(f"{source.name} is not a vendor API: its URL is set elsewhere")
        settings[source.name] = {"timeout": source.timeout, "cache_ttl": source.ttl} | entry
    return settings


class SourceVariables(PydanticBaseSettingsSource):
    """The per-source variables found by another source (the environment or a .env file)."""

    def __init__(self, settings_cls: type[BaseSettings], found_by: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._found_by = found_by

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Not asked: `__call__` gives the one field this source fills.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not isinstance(self._found_by, EnvSettingsSource):
            return {}
        # Lower-cased names: c360's settings are not case sensitive.
        found = self._found_by.env_vars
        per_source: dict[str, dict[str, Any]] = {}
        for source in SOURCES:
            entry = {
                setting: found[variable.lower()]
                for setting, variable in variables(source).items()
                if variable.lower() in found
            }
            if entry:
                per_source[source.name] = entry
        return {"per_source": per_source} if per_source else {}
