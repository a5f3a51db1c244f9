"""Connections: resolve the database (URL or embedded server) and open psycopg connections that
fit what is in between: behind a transaction pooler (PgBouncer) prepared statements are off."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, LiteralString

import psycopg

from conveyor.errors import ConfigError
from conveyor.settings import Settings, redact

log = logging.getLogger(__name__)

_embedded: Any = None  # the process's EmbeddedServer handle, started on first use


def resolve_url(settings: Settings | None = None) -> str:
    """Return the libpq URL to use, starting (or attaching to) the embedded server if needed."""
    settings = settings or Settings.from_env()
    url = settings.checked_url()
    if url is not None:
        return url
    global _embedded
    if _embedded is None:
        from conveyor.embedded import EmbeddedServer

        server = EmbeddedServer(settings.data_dir)
        server.start()
        _embedded = server
    return str(_embedded.dsn)


def stop_embedded() -> None:
    """Detach from the embedded server (it stops when no other process uses it)."""
    global _embedded
    if _embedded is not None:
        _embedded.stop()
        _embedded = None


# The server's idea of this session's backend; a pooler hands the client a made-up one at login.
BACKEND_PID_SQL: LiteralString = "SELECT pg_backend_pid()"

Route = Literal["default", "direct", "read"]


def connect(
    url: str | None = None,
    *,
    autocommit: bool = False,
    application_name: str = "conveyor",
    settings: Settings | None = None,
    route: Route = "default",
) -> psycopg.Connection[Any]:
    """Open a connection to conveyor's database, with prepared statements off behind a pooler.

    *url* None means "from the settings" (CONVEYOR_DATABASE_URL, DATABASE_URL, else the embedded
    server); *route* "direct" prefers CONVEYOR_DIRECT_DATABASE_URL (a session of its own: LISTEN,
    the phase runner's advisory lock), "read" prefers CONVEYOR_READ_DATABASE_URL (read-only
    paths, e.g. a replica). Raises ConfigError with the redacted URL when the server cannot be
    reached.
    """
    settings = settings or Settings.from_env()
    target_url, source = target(url, settings, route)
    try:
        conn = psycopg.connect(
            target_url, autocommit=True, application_name=application_name, connect_timeout=10
        )
        fit_to_pooler(conn, settings)
        conn.autocommit = autocommit
        return conn
    except (psycopg.ProgrammingError, psycopg.OperationalError) as error:
        raise connect_error(error, target_url, source) from error


def target(url: str | None, settings: Settings, route: Route = "default") -> tuple[str, str]:
    """(URL to connect to, where it came from): *url*, else the settings' for *route*; shared by
    aconnect."""
    if url is not None:
        return url, "the database URL"
    routed = {"default": None, "direct": settings.direct_url, "read": settings.read_url}[route]
    if routed is not None:
        return routed, f"CONVEYOR_{route.upper()}_DATABASE_URL"
    if settings.embedded:
        return resolve_url(settings), "the embedded server"
    return resolve_url(settings), settings.url_source


def connect_error(error: psycopg.Error, target_url: str, source: str) -> ConfigError:
    """The one-line ConfigError for a connect that failed: a malformed URL or no server."""
    if isinstance(error, psycopg.ProgrammingError):  # libpq could not parse the URL
        return ConfigError(
            f"{source} is not a valid PostgreSQL URL ({_reason(error)}): write it as "
            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        )
    return ConfigError(_unreachable(target_url, source, error))


async def connect_async(
    url: str, *, autocommit: bool = True, application_name: str = "conveyor"
) -> psycopg.AsyncConnection[Any]:
    """`connect`'s asyncio twin for the worker and the listener: psycopg's errors pass through
    (their callers reconnect with backoff)."""
    conn = await psycopg.AsyncConnection.connect(
        url, autocommit=True, application_name=application_name, connect_timeout=10
    )
    await fit_to_pooler_async(conn)
    await conn.set_autocommit(autocommit)
    return conn


def listen_url(url: str, settings: Settings | None = None) -> str:
    """The URL to LISTEN on: CONVEYOR_DIRECT_DATABASE_URL when set (a pooler in transaction mode
    cannot carry LISTEN), else *url*."""
    return (settings or Settings.from_env()).direct_url or url


def behind_pooler(backend_pid: int, server_pid: int | None) -> bool:
    """True when the pid the login handed out is not the server's: a pooler is in between."""
    return server_pid is not None and server_pid != backend_pid


def fit_to_pooler(conn: psycopg.Connection[Any], settings: Settings | None = None) -> None:
    """Switch prepared statements off on *conn* when it goes through a pooler.

    A transaction pooler (PgBouncer < 1.21) hands each transaction any server connection, where a
    statement psycopg prepared on another one does not exist or is a different query.
    CONVEYOR_PGBOUNCER=1 or 0 says so instead of asking the server.
    """
    pooled = (settings or Settings.from_env()).pgbouncer
    if pooled is None:
        row = conn.execute(BACKEND_PID_SQL).fetchone()
        pooled = behind_pooler(conn.info.backend_pid, row[0] if row else None)
        if not conn.autocommit:
            conn.rollback()
    if pooled:
        conn.prepare_threshold = None


async def fit_to_pooler_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """`fit_to_pooler` for an asyncio connection."""
    pooled = Settings.from_env().pgbouncer
    if pooled is None:
        cursor = await conn.execute(BACKEND_PID_SQL)
        row = await cursor.fetchone()
        pooled = behind_pooler(conn.info.backend_pid, row[0] if row else None)
        if not conn.autocommit:
            await conn.rollback()
    if pooled:
        conn.prepare_threshold = None


def pool_options(application_name: str, *, asynchronous: bool) -> dict[str, Any]:
    """``kwargs`` and ``configure`` for a psycopg_pool pool whose connections fit the pooler."""
    configure: Callable[[Any], None] | Callable[[Any], Awaitable[None]]
    configure = fit_to_pooler_async if asynchronous else fit_to_pooler
    return {"kwargs": {"application_name": application_name}, "configure": configure}


def _unreachable(target: str, source: str, error: Exception) -> str:
    """One line saying which server could not be reached, why, and which setting to check."""
    if source == "the embedded server":
        fix = "see the embedded server's log (<data dir>.log), or set CONVEYOR_DATABASE_URL"
    elif source.startswith("--"):
        fix = f"check {source} (or leave it out to use the embedded server)"
    elif source.endswith("_URL"):
        fix = f"check {source} (or unset it to use the embedded server)"
    else:
        fix = "check the URL"
    return f"cannot connect to {redact(target)}: {_reason(error)}; {fix}"


def _reason(error: Exception) -> str:
    """libpq's first line, which says what failed ("… port 1 failed: Connection refused")."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    return first.removeprefix("connection failed: ")
