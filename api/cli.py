"""The `c360` command line: serve, migrate, seed, export-schema, events, keys, documents,
search.

Over 400 lines: one small function per subcommand and the argument table that names them all;
each subcommand is read on its own, and splitting them would only add a module per command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from api.demo import print_demo_tokens
from api.embedded import embedded_stores, uses_simulator
from api.logs import LogFormat
from api.logs import configure as configure_logging
from api.settings import DEVELOPMENT_JWT_SECRET, Settings
from api.source_settings import url_variable
from domain.principal import Role, Scope
from sources.catalog import VENDORS

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _metrics_dir(settings: Settings, workers: int) -> Iterator[None]:
    """The directory the workers share their metrics through (`api.shared_metrics`): the one
    configured, emptied of an earlier run's snapshots, or a temporary one for several workers."""
    from api.shared_metrics import clear

    if settings.metrics_dir is not None:
        settings.metrics_dir.mkdir(parents=True, exist_ok=True)
        clear(settings.metrics_dir)
        yield
    elif workers > 1:
        with tempfile.TemporaryDirectory(prefix="c360-metrics-") as directory:
            os.environ["C360_METRICS_DIR"] = directory
            yield
    else:
        yield


def _serve(args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from api.readtimeout import ReadTimeoutProtocol

    settings = Settings()
    # uvicorn shuts down on SIGTERM, then raises the signal again with the handler it found.
    # The default one would end the process on the spot, leaving the embedded stores running;
    # this one unwinds, so they are stopped like on Ctrl-C.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with embedded_stores(settings) as resolved, _metrics_dir(settings, args.workers):
        # Workers read their settings from the environment: hand them the embedded URLs.
        os.environ["C360_MONGO_URL"] = str(resolved.mongo_url)
        for api in VENDORS:
            os.environ[url_variable(api)] = str(resolved.vendor_url(api.name))
        if args.access_log is not None:
            os.environ["C360_ACCESS_LOG"] = "true" if args.access_log else "false"
        print_demo_tokens(settings, sys.stderr)
        secret = settings.auth_jwt_secret
        public_secret = secret is not None and secret.get_secret_value() == DEVELOPMENT_JWT_SECRET
        if public_secret and args.host not in LOOPBACK:
            print(
                f"WARNING: serving on {args.host} with the development JWT secret: it is "
                "public, so anyone who can reach this port can sign an admin token. Set "
                "C360_AUTH_JWT_SECRET or a JWKS (and C360_ENV=production) for anything shared.",
                file=sys.stderr,
            )
        print(f"c360 serving on http://{args.host}:{args.port}/graphql", file=sys.stderr)
        uvicorn.run(
            "api.app:app_from_environment",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop",
            # httptools, with a deadline on reading each request's headers.
            http=ReadTimeoutProtocol,
            ws="websockets-sansio",
            log_level=args.log_level,
            # c360 formats every record, uvicorn's included (`api.logs`).
            log_config=None,
            # On SIGTERM uvicorn stops accepting, lets requests in flight finish (this long at
            # most), closes WebSockets with 1012 (service restart), then runs the shutdown.
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
            # c360's own access log (api/access.py, one JSON line per request) instead.
            access_log=False,
            # A WebSocket message is a request too: no larger than a POST body may be.
            ws_max_size=settings.max_body_bytes,
            # X-Forwarded-For names the client only when a trusted proxy sends it. uvicorn would
            # otherwise believe it from 127.0.0.1 (its FORWARDED_ALLOW_IPS default), so anything
            # local could pose as any number of addresses to the per-address rate limit.
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies,
        )
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    from migrations.runner import upgrade
    from sources.sql.search import terms_missing

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    upgrade(url)
    print("database schema is up to date", file=sys.stderr)

    async def index_if_missing(engine: AsyncEngine) -> int:
        if await terms_missing(engine=engine):
            print("customer search has no terms yet: indexing every customer", file=sys.stderr)
            return await _reindex(engine, batch=2000, quiet=False)
        return 0

    return asyncio.run(_on_database(url, index_if_missing))


async def _seed_async(args: argparse.Namespace, settings: Settings) -> int:
    from sources.mongo.client import create_client
    from sources.seed.loader import customer_count, seed
    from sources.sql.engine import create_engine
    from sources.thirdparty.simulator import VendorStore

    engine = create_engine(settings.resolved_database_url())
    assert settings.mongo_url is not None
    mongo = create_client(settings.mongo_url, timeout=30)
    vendors = VendorStore(settings.data_dir / "vendors.sqlite") if args.simulator else None
    try:
        existing = await customer_count(engine)
        if existing:
            if args.if_empty:
                print(f"store already holds {existing} customers; not seeding", file=sys.stderr)
                return 0
            print(
                f"store already holds {existing} customers; seed an empty store "
                "(or pass --if-empty to skip quietly)",
                file=sys.stderr,
            )
            return 1
        if vendors is None:
            print(
                "vendor URLs are configured: loyalty and shipment data are not seeded",
                file=sys.stderr,
            )
        started = time.perf_counter()
        counts = await seed(
            engine=engine,
            db=mongo[settings.mongo_database],
            vendors=vendors,
            customers=args.customers,
            seed=args.seed,
            progress=not args.quiet,
        )
        elapsed = time.perf_counter() - started
        summary = ", ".join(f"{v:,} {k}" for k, v in counts.items())
        print(f"seeded in {elapsed:.1f}s: {summary}", file=sys.stderr)
        return 0
    finally:
        if vendors is not None:
            vendors.close()
        await mongo.close()
        await engine.dispose()


def _seed(args: argparse.Namespace) -> int:
    settings = Settings()
    args.simulator = uses_simulator(settings)
    # Seed the embedded MongoDB in place; the simulator's data file is written directly.
    with embedded_stores(
        settings.with_vendor_urls("-") if args.simulator else settings
    ) as resolved:
        return asyncio.run(_seed_async(args, resolved))


def _simulator(args: argparse.Namespace) -> int:
    import uvicorn

    from sources.thirdparty.simulator import VendorStore, create_simulator_app

    settings = Settings()
    store = VendorStore(settings.data_dir / "vendors.sqlite")
    app = create_simulator_app(
        store,
        latency_ms=settings.simulator_latency_ms,
        failure_rate=settings.simulator_failure_rate,
    )
    print(f"vendor simulator on http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off")
    store.close()
    return 0


def _export_schema(args: argparse.Namespace) -> int:
    from resolvers.federation import client_sdl, subgraph_sdl
    from resolvers.schema import create_schema

    print_sdl = subgraph_sdl if args.federation else client_sdl
    sdl = print_sdl(create_schema()) + "\n"
    if args.output:
        Path(args.output).write_text(sdl, encoding="utf-8")
    else:
        sys.stdout.write(sdl)
    return 0


async def _dead_letters_async(args: argparse.Namespace, url: str) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from sources.events.deadletters import list_dead_letters
    from sources.sql.engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            letters = await list_dead_letters(
                connection=connection, limit=args.limit, before_id=args.before
            )
    except (DBAPIError, OSError) as error:
        where = make_url(url).render_as_string(hide_password=True)
        cause = error.orig if isinstance(error, DBAPIError) else error
        print(f"cannot read dead letters from {where}: {cause}", file=sys.stderr)
        print("is the schema up to date? (c360 migrate)", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    if not letters:
        print("no dead letters", file=sys.stderr)
        return 0
    for letter in letters:
        print(
            "\t".join(
                (
                    str(letter.id),
                    letter.received_at.isoformat(timespec="seconds"),
                    letter.type or "-",
                    letter.event_id or "-",
                    "; ".join(letter.reasons),
                )
            )
        )
    if len(letters) == args.limit:
        print(f"older ones: --before {letters[-1].id}", file=sys.stderr)
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    return asyncio.run(_dead_letters_async(args, Settings().resolved_database_url()))


async def _on_database(url: str, work: Callable[[AsyncEngine], Awaitable[int]]) -> int:
    """Run `work` with an engine on `url`; a database that cannot be used is exit code 2."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from sources.sql.engine import create_engine

    engine = create_engine(url)
    try:
        return await work(engine)
    except (DBAPIError, OSError) as error:
        where = make_url(url).render_as_string(hide_password=True)
        cause = error.orig if isinstance(error, DBAPIError) else error
        print(f"cannot use the database {where}: {cause}", file=sys.stderr)
        print("is the schema up to date? (c360 migrate)", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _when(at: dt.datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "-"


def _keys_create(args: argparse.Namespace) -> int:
    from api.keys import KeyRequestError, create_key

    expires_at = None
    if args.expires_in_days is not None:
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=args.expires_in_days)

    async def work(engine: AsyncEngine) -> int:
        try:
            info, key = await create_key(
                engine=engine,
                name=args.name,
                roles=[Role(role) for role in args.role],
                scopes=args.scope,
                expires_at=expires_at,
            )
        except KeyRequestError as error:
            print(f"cannot create the key: {error}", file=sys.stderr)
            return 2
        print(key)
        print(f"the key {info.name!r} will not be shown again: store it now", file=sys.stderr)
        return 0

    return asyncio.run(_on_database(Settings().resolved_database_url(), work))


def _keys_list(_args: argparse.Namespace) -> int:
    from api.keys import list_keys

    async def work(engine: AsyncEngine) -> int:
        keys = await list_keys(engine=engine)
        if not keys:
            print("no API keys", file=sys.stderr)
            return 0
        _print_table(
            ("NAME", "ROLES", "SCOPES", "CREATED", "EXPIRES", "REVOKED"),
            [
                (
                    key.name,
                    ",".join(sorted(key.roles)),
                    ",".join(sorted(key.scopes)) or "-",
                    _when(key.created_at),
                    _when(key.expires_at),
                    _when(key.revoked_at),
                )
                for key in keys
            ],
        )
        return 0

    return asyncio.run(_on_database(Settings().resolved_database_url(), work))


def _keys_revoke(args: argparse.Namespace) -> int:
    from api.keys import revoke_key

    settings = Settings()

    async def work(engine: AsyncEngine) -> int:
        if not await revoke_key(engine=engine, name=args.name):
            print(f"no API key is named {args.name!r}", file=sys.stderr)
            return 1
        print(
            f"revoked the key {args.name!r}; servers that verified it recently may accept it "
            f"for up to {settings.auth_key_cache_seconds:g}s more",
            file=sys.stderr,
        )
        return 0

    return asyncio.run(_on_database(settings.resolved_database_url(), work))


def _documents_add(args: argparse.Namespace) -> int:
    from api.documents import DocumentRequestError, add_document
    from resolvers.schema import create_schema

    try:
        # Bytes, decoded as they are: read_text() would turn CRLF into LF and so change the
        # hash a client computes over the file it sends.
        body = Path(args.file).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        print(f"cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    schema = create_schema()._schema

    async def work(engine: AsyncEngine) -> int:
        try:
            sha256 = await add_document(engine=engine, body=body, name=args.name, schema=schema)
        except DocumentRequestError as error:
            print(f"cannot trust {args.file}: {error}", file=sys.stderr)
            return 2
        print(sha256)
        return 0

    return asyncio.run(_on_database(Settings().resolved_database_url(), work))


def _documents_list(_args: argparse.Namespace) -> int:
    from api.documents import list_documents

    async def work(engine: AsyncEngine) -> int:
        documents = await list_documents(engine=engine)
        if not documents:
            print("no trusted documents", file=sys.stderr)
            return 0
        _print_table(
            ("SHA256", "NAME", "ADDED"),
            [(d.sha256, d.name or "-", _when(d.added_at)) for d in documents],
        )
        return 0

    return asyncio.run(_on_database(Settings().resolved_database_url(), work))


def _search_reindex(args: argparse.Namespace) -> int:
    async def work(engine: AsyncEngine) -> int:
        return await _reindex(engine, batch=args.batch, quiet=args.quiet)

    return asyncio.run(_on_database(Settings().resolved_database_url(), work))


async def _reindex(engine: AsyncEngine, *, batch: int, quiet: bool) -> int:
    """Rewrite every customer's search terms, with a progress bar unless `quiet`."""
    from tqdm import tqdm

    from sources.seed.loader import customer_count
    from sources.sql.search import reindex_search

    total = await customer_count(engine)
    started = time.perf_counter()
    with tqdm(total=total, unit="customer", disable=quiet, desc="indexing") as bar:
        done = await reindex_search(engine=engine, batch=batch, progress=bar.update)
    elapsed = time.perf_counter() - started
    print(f"indexed {done:,} customers for search in {elapsed:.1f}s", file=sys.stderr)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="c360",
        description="c360: a GraphQL customer-360 service. Settings come from C360_* "
        "environment variables and a .env file.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the GraphQL API (uvicorn, uvloop, httptools)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        # Off by default: a line per request is work on every request.
        help="log each request as a JSON line on stdout (C360_ACCESS_LOG; default off)",
    )
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="create or upgrade the SQL schema (Alembic)")
    migrate.set_defaults(run=_migrate)

    seed = commands.add_parser("seed", help="load the deterministic synthetic dataset")
    seed.add_argument(
        "--customers", type=int, default=1000, help="how many customers to generate (default 1000)"
    )
    seed.add_argument("--seed", type=int, default=360, help="random seed (default 360)")
    seed.add_argument(
        "--if-empty",
        action="store_true",
        help="do nothing, successfully, when customers already exist",
    )
    seed.add_argument("--quiet", action="store_true", help="no progress bar")
    seed.set_defaults(run=_seed)

    simulator = commands.add_parser(
        "simulator", help="serve the vendor simulator (loyalty + carrier APIs) on its own"
    )
    simulator.add_argument("--host", default="127.0.0.1", help="address to bind")
    simulator.add_argument("--port", type=int, default=8100, help="port to bind (default 8100)")
    simulator.set_defaults(run=_simulator)

    export = commands.add_parser(
        "export-schema",
        help="print the client SDL (schema.graphql), or the subgraph SDL with --federation",
    )
    export.add_argument("--output", "-o", help="write to this file instead of stdout")
    export.add_argument(
        "--federation",
        action="store_true",
        help="print the Apollo Federation 2 subgraph SDL a gateway composes "
        "(schema.subgraph.graphql): @key, @link, _entities, _service",
    )
    export.set_defaults(run=_export_schema)

    events = commands.add_parser(
        "events",
        help="look at ingested events (POST /events)",
        description="Look at events sent to POST /events. Reads the SQL database in "
        "C360_DATABASE_URL (default: the SQLite file under C360_DATA_DIR).",
    )
    events_commands = events.add_subparsers(dest="events_command", required=True)
    dead_letters = events_commands.add_parser(
        "dead-letters",
        help="list rejected events, newest first",
        description="List rejected events, newest first: id, time received, type, event id "
        "and the reasons they were rejected (tab-separated).",
    )
    dead_letters.add_argument(
        "--limit", type=_positive, default=20, metavar="N", help="how many to list (default 20)"
    )
    dead_letters.add_argument(
        "--before", type=int, metavar="ID", help="only those older than dead letter ID (paging)"
    )
    dead_letters.set_defaults(run=_dead_letters)

    database = "Reads and writes the SQL database in C360_DATABASE_URL (default: the SQLite "
    database += "file under C360_DATA_DIR)."
    keys = commands.add_parser(
        "keys",
        help="create, list and revoke service API keys",
        description="Manage the API keys services authenticate with (X-API-Key, or "
        "Authorization: Bearer). " + database,
    )
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_create = keys_commands.add_parser(
        "create",
        help="create a key and print it (shown only this once)",
        description="Create a key and print it on stdout; only its hash is stored, so it "
        "cannot be shown again.",
    )
    keys_create.add_argument("--name", required=True, help="a unique name, recorded in audits")
    keys_create.add_argument(
        "--role",
        action="append",
        required=True,
        choices=[role.value for role in Role],
        metavar="ROLE",
        help="a role of the key, repeatable: " + ", ".join(role.value for role in Role),
    )
    keys_create.add_argument(
        "--scope",
        action="append",
        default=[],
        choices=[scope.value for scope in Scope],
        metavar="SCOPE",
        help="what a service key may read, repeatable: " + ", ".join(s.value for s in Scope),
    )
    keys_create.add_argument(
        "--expires-in-days", type=_positive, metavar="N", help="expire after N days (default never)"
    )
    keys_create.set_defaults(run=_keys_create)
    keys_list = keys_commands.add_parser(
        "list", help="list every key (never the key itself)", description="List every key."
    )
    keys_list.set_defaults(run=_keys_list)
    keys_revoke = keys_commands.add_parser(
        "revoke",
        help="revoke a key by name",
        description="Revoke a key. Servers remember verified keys for "
        "C360_AUTH_KEY_CACHE_SECONDS: a server that verified it recently accepts it that "
        "much longer.",
    )
    keys_revoke.add_argument("name", metavar="NAME", help="the key's name")
    keys_revoke.set_defaults(run=_keys_revoke)

    documents = commands.add_parser(
        "documents",
        help="trust GraphQL documents (persisted-query allow-list)",
        description="Manage trusted documents: clients send a document's SHA-256 instead of "
        "its text. " + database,
    )
    documents_commands = documents.add_subparsers(dest="documents_command", required=True)
    documents_add = documents_commands.add_parser(
        "add",
        help="validate a document against the schema, trust it, print its SHA-256",
        description="Validate FILE against the schema and trust it; prints the SHA-256 of the "
        "file's exact text, which is what clients send.",
    )
    documents_add.add_argument("file", metavar="FILE", help="the GraphQL document")
    documents_add.add_argument("--name", help="a name to recognise it by")
    documents_add.set_defaults(run=_documents_add)
    documents_list = documents_commands.add_parser(
        "list", help="list trusted documents", description="List trusted documents, oldest first."
    )
    documents_list.set_defaults(run=_documents_list)

    search = commands.add_parser(
        "search",
        help="maintain customer search",
        description="Maintain the terms `searchCustomers` matches. " + database,
    )
    search_commands = search.add_subparsers(dest="search_command", required=True)
    search_reindex = search_commands.add_parser(
        "reindex",
        help="(re)write every customer's search terms, with a progress bar",
        description="Rewrite every customer's search terms from the customer rows. Needed "
        "once for a database seeded or loaded before search existed (it finds nobody until "
        "then); safe to run at any time, while the service runs.",
    )
    search_reindex.add_argument(
        "--batch",
        type=_positive,
        default=2000,
        metavar="N",
        help="customers per transaction (default 2000)",
    )
    search_reindex.add_argument("--quiet", action="store_true", help="no progress bar")
    search_reindex.set_defaults(run=_search_reindex)
    return parser


def _log_format() -> LogFormat:
    """The configured log format; text when the settings do not load (the command that reads
    them says why)."""
    try:
        return Settings().log_format
    except ValueError:
        return LogFormat.TEXT


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `c360` command."""
    configure_logging(_log_format())
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
