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
    if settings.database_url is not None:
        return settings.database_url
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
    target = url or resolve_url(settings)
    try:
        return psycopg.connect(
            target, autocommit=autocommit, application_name=application_name, connect_timeout=10
        )
    except psycopg.OperationalError as error:
        raise ConfigError(
            f"cannot connect to {redact(target)}: {str(error).strip().splitlines()[-1]}; "
            "check CONVEYOR_DATABASE_URL (or unset it to use the embedded server)"
        ) from error
