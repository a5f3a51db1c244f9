"""Connections: resolve the database (URL or embedded server) and open psycopg connections."""

from __future__ import annotations

import logging
from typing import Any

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


def connect(
    url: str | None = None,
    *,
    autocommit: bool = False,
    application_name: str = "conveyor",
    settings: Settings | None = None,
) -> psycopg.Connection[Any]:
    """Open a connection to conveyor's database.

    *url* None means "from the settings" (CONVEYOR_DATABASE_URL, DATABASE_URL, else the embedded
    server). Raises ConfigError with the redacted URL when the server cannot be reached.
    """
    target_url, source = target(url, settings or Settings.from_env())
    try:
        return psycopg.connect(
            target_url, autocommit=autocommit, application_name=application_name, connect_timeout=10
        )
    except (psycopg.ProgrammingError, psycopg.OperationalError) as error:
        raise connect_error(error, target_url, source) from error


def target(url: str | None, settings: Settings) -> tuple[str, str]:
    """(URL to connect to, where it came from): *url*, else the settings'; shared by aconnect."""
    if url is not None:
        return url, "the database URL"
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
