"""Environment → one frozen Settings value (where the database is, how to reach it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    """Where conveyor finds its database.

    ``database_url`` comes from CONVEYOR_DATABASE_URL, else DATABASE_URL; when both are unset,
    conveyor starts an embedded PostgreSQL in ``data_dir`` (None = the default location).
    """

    database_url: str | None
    data_dir: Path | None = None
    application_name: str = "conveyor"

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
    ) -> Settings:
        """Read settings from *environ* (default os.environ); explicit arguments win."""
        env = os.environ if environ is None else environ
        url = database_url or env.get("CONVEYOR_DATABASE_URL") or env.get("DATABASE_URL") or None
        if data_dir is None and env.get("CONVEYOR_DATA_DIR"):
            data_dir = Path(env["CONVEYOR_DATA_DIR"])
        return cls(database_url=url, data_dir=data_dir)


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
