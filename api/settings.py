"""Every setting of c360, read from C360_* environment variables and a .env file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path

from pydantic import Field, PositiveFloat, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from api.logs import LogFormat
from api.source_settings import SourceSettings, SourceVariables, with_declared_defaults
from sources.catalog import NAMES, VENDORS
from sources.optional_redis import cluster_url


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Engine(StrEnum):
    """What runs queries (`api.execution`)."""

    PLAN = "plan"  # c360's engine, graphql-core for what a plan does not cover
    GRAPHQL_CORE = "graphql-core"  # graphql-core alone
    # Both, and a refusal when they differ: the test suite runs this way.
    DIFFERENTIAL = "differential"


# The HS256 secret of `make run`'s demo tokens; production refuses to start with it.
DEVELOPMENT_JWT_SECRET = "c360-development-secret-do-not-use-in-production"


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
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (cache and events); `redis+cluster://host:port[,host:port...]` "
        "for a Redis Cluster.",
    )
    redis_cluster: bool = Field(
        default=False,
        description="Take a `redis://` `redis_url` as a node of a Redis Cluster (it becomes "
        "`redis+cluster://`).",
    )

    per_source: dict[str, SourceSettings] = Field(
        default_factory=dict,
        validate_default=True,
        description="Each declared source's timeout and cache TTL (and a vendor API's URL), "
        "from C360_<NAME>_TIMEOUT, C360_CACHE_TTL_<NAME> and C360_<NAME>_URL; defaults from "
        "its declaration (`sources.catalog`).",
    )

    simulator_latency_ms: float = Field(default=0.0, ge=0)
    simulator_failure_rate: float = Field(default=0.0, ge=0, le=1)

    cache_enabled: bool = True
    cache_negative_ttl: PositiveFloat = Field(
        default=15.0, description="How long 'not found' is remembered."
    )
    cache_stale_grace: float = Field(
        default=600.0, ge=0, description="How long past its TTL an entry may bridge an outage."
    )
    cache_max_entries: int = Field(default=200_000, ge=1, description="In-process cache size.")
    cache_namespace: str = Field(default="c360", description="Prefix of every Redis key.")
    response_cache_enabled: bool = Field(
        default=True,
        description="Keep query answers per caller's view, invalidated with the entity cache "
        "(needs the entity cache).",
    )
    response_cache_report: bool = Field(
        default=False,
        description="Say in every answer's `extensions.cache` whether the response cache "
        "answered it (`hit`) or not (`miss`); a request asks with `X-C360-Cache: report`.",
    )
    redis_timeout: PositiveFloat = Field(
        default=0.25,
        description="Seconds per Redis call, not counting time the event loop was busy elsewhere.",
    )
    redis_breaker_seconds: PositiveFloat = Field(
        default=5.0, description="How long to bypass Redis after it failed."
    )

    events_stream_max_length: int = Field(
        default=100_000, ge=100, description="Events kept on the bus, at most."
    )
    events_retention_seconds: PositiveFloat = Field(
        default=86_400.0, description="How long events stay replayable (`after`)."
    )
    retention_outbox_seconds: PositiveFloat = Field(
        default=7 * 86_400.0,
        description="How long published outbox events are kept: the deduplication window of "
        "POST /events (at least events_retention_seconds).",
    )
    retention_dead_letters_seconds: PositiveFloat = Field(
        default=30 * 86_400.0, description="How long dead letters are kept."
    )
    retention_every_seconds: PositiveFloat = Field(
        default=3_600.0, description="How often the retention task prunes (relay instances)."
    )
    ingest_grouped: bool = Field(
        default=True,
        description="Write ingested interactions of many customers in one MongoDB transaction, "
        "with grouped outbox documents (turn off while instances older than this feature still "
        "run: their relay cannot read grouped documents).",
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
    limit_subscriptions_per_principal: int = Field(
        default=100,
        ge=1,
        description="Live subscriptions one principal may hold across its sockets and instances.",
    )
    websocket_init_timeout: PositiveFloat = Field(
        default=5.0, description="Seconds a WebSocket has to send connection_init."
    )

    phone_region: str = Field(
        default="GB",
        description="Region (ISO 3166-1 alpha-2) for phone numbers written without +country.",
    )
    batch_keys_max: int = Field(
        default=500, ge=1, description="Most ids or emails one server-to-server lookup takes."
    )

    page_default: int = Field(default=20, ge=1)
    page_max: int = Field(default=100, ge=1)

    events_max_batch: int = Field(
        default=500, ge=1, description="The most events one POST /events batch may hold."
    )
    events_max_body_bytes: int = Field(
        default=1_048_576, ge=1, description="The largest POST /events body read, in bytes."
    )

    auth_jwt_secret: SecretStr | None = Field(
        default=SecretStr(DEVELOPMENT_JWT_SECRET),
        description="HS256 secret (development tokens); empty: accept only JWKS-signed ones.",
    )
    auth_jwt_jwks_url: str | None = Field(
        default=None, description="The identity provider's JWKS URL (RS256/ES256 tokens)."
    )
    auth_jwt_jwks_file: Path | None = Field(
        default=None, description="A JWKS file, instead of a URL (RS256/ES256 tokens)."
    )
    auth_jwt_issuer: str = Field(default="c360-development", description="Required `iss`.")
    auth_jwt_audience: str = Field(default="c360", description="Required `aud`.")
    auth_jwt_roles_claim: str = Field(
        default="roles", description="Claim holding the roles; dots reach into objects."
    )
    auth_jwt_scopes_claim: str = Field(
        default="scope", description="Claim holding service scopes (space-separated or a list)."
    )
    auth_jwt_leeway_seconds: float = Field(default=30.0, ge=0, description="Clock skew allowed.")
    auth_jwks_cache_seconds: PositiveFloat = Field(
        default=300.0, description="How long a fetched JWKS is trusted before it is fetched again."
    )
    auth_key_cache_seconds: PositiveFloat = Field(
        default=5.0, description="How long a verified API key is remembered (revocation delay)."
    )

    limit_depth: int = Field(default=12, ge=1, description="Deepest field nesting allowed.")
    limit_aliases: int = Field(default=100, ge=0, description="Most aliases in one document.")
    limit_tokens: int = Field(default=5_000, ge=100, description="Most lexical tokens parsed.")
    limit_selections: int = Field(
        default=1_000,
        ge=1,
        description="Most fields and fragments in one document, fragments spread at each use.",
    )
    limit_comparisons: int = Field(
        default=5_000,
        ge=0,
        description="Most work checking that same-named fields merge (2 per pair compared).",
    )
    limit_cost_anonymous: int = Field(default=10, ge=0, description="Cost budget, anonymous.")
    limit_cost_customer: int = Field(default=1_000, ge=0, description="Cost budget, customer.")
    limit_cost_agent: int = Field(default=20_000, ge=0, description="Cost budget, agent.")
    limit_cost_analyst: int = Field(default=20_000, ge=0, description="Cost budget, analyst.")
    limit_cost_service: int = Field(default=100_000, ge=0, description="Cost budget, service.")
    limit_cost_admin: int = Field(default=100_000, ge=0, description="Cost budget, admin.")
    max_body_bytes: int = Field(
        default=102_400, ge=1024, description="The largest /graphql request body, in bytes."
    )
    batch_enabled: bool = Field(
        default=False, description="Accept a JSON array of operations in one POST."
    )
    batch_max: int = Field(default=10, ge=1, description="Most operations in one batch.")
    engine: Engine = Field(
        default=Engine.PLAN,
        description="What runs queries: `plan` (c360's engine), `graphql-core`, or "
        "`differential` (both, refusing an answer where they differ; for tests).",
    )
    access_log: bool = Field(
        default=False,
        description="Write one JSON line per HTTP request to the `c360.access` logger (stdout).",
    )
    log_format: LogFormat = Field(
        default=LogFormat.TEXT,
        description="`text` (LEVEL logger: message) or `json` (one object per line, with the "
        "request id of the request a record was written for); email addresses and phone numbers "
        "are scrubbed in both.",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OpenTelemetry traces: the OTLP/HTTP collector's base URL (spans go to "
        "`<url>/v1/traces`). Without it, the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or "
        "`OTEL_EXPORTER_OTLP_ENDPOINT` turns tracing on; with none of them, tracing is off and "
        "costs nothing (see api/tracing).",
    )
    gc_young_threshold: int = Field(
        default=10_000,
        ge=0,
        description="`c360 serve`: after start-up, freeze what it made and collect the young "
        "generation every this many allocations (0: Python's own settings; see api/collector).",
    )
    execution_timeout: PositiveFloat = Field(
        default=10.0, description="Seconds one operation may run before it is stopped."
    )
    idempotency_ttl_seconds: PositiveFloat = Field(
        default=86400.0,
        description="How long a mutation's Idempotency-Key and its stored answer are kept.",
    )
    rate_limit_enabled: bool = True
    rate_limit_principal: str = Field(
        default="600/minute", description="Requests per authenticated principal (limits syntax)."
    )
    rate_limit_ip: str = Field(
        default="1200/minute", description="Requests per client IP address (limits syntax)."
    )
    persisted_queries_ttl: PositiveFloat = Field(
        default=86_400.0, description="How long an automatic persisted query is kept."
    )
    trusted_documents_only: bool = Field(
        default=False,
        description="Customer-role requests may only run documents added by `c360 documents`.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed cross-origin (CORS) and on the WebSocket.",
    )
    audit_flush_seconds: PositiveFloat = Field(
        default=1.0, description="How often buffered audit entries are written."
    )
    request_read_timeout: PositiveFloat = Field(
        default=15.0,
        description="Seconds a client has to send a request's headers, and then its body (408).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks whose X-Forwarded-For is believed (none: no one's).",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token /metrics requires (unset: none required)."
    )
    shutdown_grace_seconds: int = Field(
        default=20,
        ge=1,
        description="`c360 serve`, on SIGTERM: stop accepting connections, then give requests "
        "in flight this long to finish before they are cancelled (with the relay's last "
        "pass, at most 5 s, it fits Kubernetes' default 30 s termination grace period).",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="A directory the worker processes of one instance share, so /metrics "
        "answers their sum (`c360 serve --workers N` makes one when unset).",
    )
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without a token in production."
    )

    @field_validator("auth_jwt_secret", "metrics_token")
    @classmethod
    def _blank_secret_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator(
        "database_url",
        "mongo_url",
        "redis_url",
        "auth_jwt_jwks_url",
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _the_url_says_cluster(self) -> Settings:
        # Every Redis client is built from the URL alone, which says whether it is a cluster
        # (`sources.optional_redis.is_cluster`); this flag only rewrites it.
        if self.redis_url and self.redis_cluster:
            self.redis_url = cluster_url(self.redis_url)
        return self

    @model_validator(mode="after")
    def _outbox_outlives_the_history(self) -> Settings:
        # The outboxes tell an aged-out event id from one never issued (`after:`): they must
        # keep an event at least as long as the bus does.
        if self.retention_outbox_seconds < self.events_retention_seconds:
            raise ValueError(
                "C360_RETENTION_OUTBOX_SECONDS must be at least C360_EVENTS_RETENTION_SECONDS"
            )
        return self

    def resolved_database_url(self) -> str:
        """The SQL URL in force: the configured one, or the SQLite file under data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'c360.sqlite').resolve()}"

    @field_validator("per_source", mode="before")
    @classmethod
    def _every_declared_source(cls, given: object) -> dict[str, object]:
        return with_declared_defaults(given)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win; `per_source` entries are merged key by key across them.
        return (
            init_settings,
            SourceVariables(settings_cls, env_settings),
            env_settings,
            SourceVariables(settings_cls, dotenv_settings),
            dotenv_settings,
            file_secret_settings,
        )

    def cache_ttls(self) -> dict[str, float]:
        """Freshness of cached entries, per source."""
        return {name: source.cache_ttl for name, source in self.per_source.items()}

    def source_timeout(self, source: str) -> float:
        """The per-call timeout of one source, in seconds."""
        return self.per_source[source].timeout

    def vendor_url(self, vendor: str) -> str | None:
        """A vendor API's base URL; None means the bundled simulator."""
        return self.per_source[vendor].url

    def simulated_vendors(self) -> list[str]:
        """The vendor APIs with no URL set, which the bundled simulator stands in for."""
        return [api.name for api in VENDORS if self.per_source[api.name].url is None]

    def with_sources(self, **changes: Mapping[str, object]) -> Settings:
        """A copy with some sources' settings changed, e.g. `with_sources(mongo={"timeout": 1})`."""
        per_source = dict(self.per_source)
        for name, change in changes.items():
            if name not in per_source:
                raise ValueError(f"no source is named {name!r}; declared: {', '.join(NAMES)}")
            per_source[name] = SourceSettings.model_validate(
                per_source[name].model_dump() | dict(change)
            )
        return self.model_copy(update={"per_source": per_source})

    def with_vendor_urls(self, url: str, vendors: Iterable[str] | None = None) -> Settings:
        """A copy with `url` for the given vendors (default: those the simulator stands in for)."""
        names = self.simulated_vendors() if vendors is None else list(vendors)
        return self.with_sources(**{name: {"url": url} for name in names})
