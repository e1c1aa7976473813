"""Every setting of c360, read from C360_* environment variables and a .env file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, PositiveFloat, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Flat C360_* settings; an unset store URL means the embedded stand-in for that store."""

    model_config = SettingsConfigDict(
        env_prefix="C360_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Field(default=Path("var"), description="Where the embedded stores live.")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default SQLite under data_dir.",
    )
    mongo_url: str | None = Field(
        default=None, description="MongoDB URL; default an embedded SecantusDB process."
    )
    mongo_database: str = "c360"
    redis_url: str | None = Field(default=None, description="Redis URL (cache and events).")

    loyalty_url: str | None = Field(
        default=None, description="Loyalty API base URL; default the bundled simulator."
    )
    tracking_url: str | None = Field(
        default=None, description="Carrier tracking API base URL; default the bundled simulator."
    )

    sql_timeout: PositiveFloat = 2.0
    mongo_timeout: PositiveFloat = 2.0
    loyalty_timeout: PositiveFloat = 1.0
    tracking_timeout: PositiveFloat = 1.0

    simulator_latency_ms: float = Field(default=0.0, ge=0)
    simulator_failure_rate: float = Field(default=0.0, ge=0, le=1)

    cache_enabled: bool = True
    cache_ttl_sql: PositiveFloat = 300.0
    cache_ttl_mongo: PositiveFloat = 120.0
    cache_ttl_loyalty: PositiveFloat = 300.0
    cache_ttl_tracking: PositiveFloat = 60.0
    cache_negative_ttl: PositiveFloat = Field(
        default=15.0, description="How long 'not found' is remembered."
    )
    cache_stale_grace: float = Field(
        default=600.0, ge=0, description="How long past its TTL an entry may bridge an outage."
    )
    cache_max_entries: int = Field(default=200_000, ge=1, description="In-process cache size.")
    cache_namespace: str = Field(default="c360", description="Prefix of every Redis key.")
    redis_timeout: PositiveFloat = Field(default=0.25, description="Seconds per Redis call.")
    redis_breaker_seconds: PositiveFloat = Field(
        default=5.0, description="How long to bypass Redis after it failed."
    )

    events_stream_max_length: int = Field(
        default=100_000, ge=100, description="Events kept on the bus, at most."
    )
    events_retention_seconds: PositiveFloat = Field(
        default=86_400.0, description="How long events stay replayable (`after`)."
    )
    relay_enabled: bool = Field(
        default=True,
        description="Run the outbox relay in this instance (off: another instance publishes).",
    )
    relay_poll_seconds: PositiveFloat = Field(
        default=0.5, description="How often the outbox relay looks for other instances' rows."
    )
    subscription_queue_size: int = Field(
        default=256, ge=1, description="Events a subscriber may fall behind before it is closed."
    )
    websocket_max_subscriptions: int = Field(
        default=20, ge=1, description="Subscriptions one WebSocket may run at once."
    )
    websocket_init_timeout: PositiveFloat = Field(
        default=5.0, description="Seconds a WebSocket has to send connection_init."
    )

    page_default: int = Field(default=20, ge=1)
    page_max: int = Field(default=100, ge=1)

    events_max_batch: int = Field(
        default=500, ge=1, description="The most events one POST /events batch may hold."
    )
    events_max_body_bytes: int = Field(
        default=1_048_576, ge=1, description="The largest POST /events body read, in bytes."
    )

    @field_validator("database_url", "mongo_url", "redis_url", "loyalty_url", "tracking_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    def resolved_database_url(self) -> str:
        """The SQL URL in force: the configured one, or the SQLite file under data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'c360.sqlite').resolve()}"

    def cache_ttls(self) -> dict[str, float]:
        """Freshness of cached entries, per source."""
        return {
            "sql": self.cache_ttl_sql,
            "mongo": self.cache_ttl_mongo,
            "loyalty": self.cache_ttl_loyalty,
            "tracking": self.cache_ttl_tracking,
        }

    def source_timeout(self, source: str) -> float:
        """The per-call timeout of one source, in seconds."""
        timeout: float = getattr(self, f"{source}_timeout")
        return timeout
