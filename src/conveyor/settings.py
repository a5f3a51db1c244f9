"""Environment → one frozen Settings value (where the database is, how to reach it)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ConfigError

# A libpq URL (postgresql:// or postgres://) or a key=value conninfo string.
_URL = re.compile(r"^(postgres(ql)?://|\s*\w+\s*=)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Settings:
    """Where conveyor finds its database.

    ``database_url`` comes from CONVEYOR_DATABASE_URL, else DATABASE_URL; when both are unset,
    conveyor starts an embedded PostgreSQL in ``data_dir`` (None = the default location).
    ``url_source`` names where the URL came from, for messages (``--database-url``,
    ``CONVEYOR_DATABASE_URL``, ``DATABASE_URL``).

    Behind a connection pooler (docs/scaling.md): ``direct_url`` (CONVEYOR_DIRECT_DATABASE_URL)
    reaches the server itself, for LISTEN and `conveyor phase`, which need a session of their
    own; ``read_url`` (CONVEYOR_READ_DATABASE_URL, e.g. a replica) serves `conveyor health`.
    ``pgbouncer`` (CONVEYOR_PGBOUNCER) says whether connections go through a transaction pooler
    that cannot keep prepared statements: None (unset, ``auto``) detects it per connection.
    """

    database_url: str | None
    data_dir: Path | None = None
    url_source: str = "CONVEYOR_DATABASE_URL"
    direct_url: str | None = None
    read_url: str | None = None
    pgbouncer: bool | None = None

    @property
    def embedded(self) -> bool:
        """True when no URL is configured and the embedded server will be used."""
        return self.database_url is None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        database_url: str | None = None,
        data_dir: Path | None = None,
        url_source: str = "--database-url",
    ) -> Settings:
        """Read settings from *environ* (default os.environ); explicit arguments win.

        *url_source* names where an explicit *database_url* came from.
        """
        env = os.environ if environ is None else environ
        if database_url:
            url, source = database_url, url_source
        elif env.get("CONVEYOR_DATABASE_URL"):
            url, source = env["CONVEYOR_DATABASE_URL"], "CONVEYOR_DATABASE_URL"
        elif env.get("DATABASE_URL"):
            url, source = env["DATABASE_URL"], "DATABASE_URL"
        else:
            url, source = None, "CONVEYOR_DATABASE_URL"
        if data_dir is None and env.get("CONVEYOR_DATA_DIR"):
            data_dir = Path(env["CONVEYOR_DATA_DIR"])
        return cls(
            database_url=url,
            data_dir=data_dir,
            url_source=source,
            direct_url=env.get("CONVEYOR_DIRECT_DATABASE_URL") or None,
            read_url=env.get("CONVEYOR_READ_DATABASE_URL") or None,
            pgbouncer=_switch(env, "CONVEYOR_PGBOUNCER"),
        )

    def checked_url(self) -> str | None:
        """The configured URL, or None for the embedded server; ConfigError if it is malformed."""
        url = self.database_url
        if url is not None and not _URL.match(url):
            # echo the value only when it cannot hold a password (no user-info part)
            shown = f" ({url!r})" if "@" not in url else ""
            raise ConfigError(
                f"{self.url_source} is not a PostgreSQL URL{shown}: write it as "
                "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE, "
                "e.g. postgresql://me@localhost:5432/app"
            )
        return url


def _switch(env: Mapping[str, str], name: str) -> bool | None:
    """A yes/no/auto environment variable: True, False, or None for unset or ``auto``."""
    value = env.get(name, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(
        f"{name} must be 1 (yes), 0 (no) or auto, not {env[name]!r}: "
        "unset it to let conveyor detect a pooler"
    )


def redact(url: str) -> str:
    """Return *url* with any password replaced by ***, for messages and logs."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(url)
    except Exception:  # an unparsable URL: show nothing of it rather than leak a secret
        return "<unparsable database URL>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None})
