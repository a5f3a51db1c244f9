"""`conveyor web`: serve the console (refusing a non-loopback address without TLS or --insecure),
and `conveyor web user add` to write its users file."""

from __future__ import annotations

import ipaddress
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import platformdirs

from conveyor.cli.context import check_reachable, err_console, state
from conveyor.errors import ConfigError
from conveyor.web import users

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

USERS_ENV = "CONVEYOR_WEB_USERS_FILE"
SECRET_ENV = "CONVEYOR_WEB_SECRET"
METRICS_TOKEN_ENV = "CONVEYOR_WEB_METRICS_TOKEN"
READ_ENV = "CONVEYOR_READ_DATABASE_URL"


def default_users_file() -> Path:
    """Where the users file lives unless --users or $CONVEYOR_WEB_USERS_FILE says otherwise."""
    return Path(platformdirs.user_config_dir("conveyor")) / "web-users"


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_USERS_OPTION = click.option(
    "--users",
    "users_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=USERS_ENV,
    default=None,
    help=f"Users file (default: ${USERS_ENV}, else {default_users_file()}).",
)


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@_USERS_OPTION
@click.option("--certfile", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--keyfile", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).",
)
@click.option(
    "--metrics-token",
    envvar=METRICS_TOKEN_ENV,
    default=None,
    help=f"Bearer token a Prometheus scraper sends for /metrics (default: ${METRICS_TOKEN_ENV}).",
)
@click.pass_context
def web(
    ctx: click.Context,
    host: str,
    port: int,
    users_file: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    insecure: bool,
    metrics_token: str | None,
) -> None:
    """Serve the console: log in, see queues, jobs, dead letters, components, phases; act."""
    if ctx.invoked_subcommand is not None:
        return
    if (certfile is None) != (keyfile is None):
        raise click.UsageError("pass both --certfile and --keyfile for TLS, or neither")
    tls = certfile is not None
    if not tls and not insecure and not is_loopback(host):
        raise click.UsageError(
            f"refusing to serve plain HTTP on {host}, which is not a loopback address: pass "
            "--certfile and --keyfile for TLS, or --insecure behind a TLS-terminating proxy"
        )
    path = users_file or default_users_file()
    known = users.load(path)
    _serve(ctx, host, port, path, known, certfile, keyfile, metrics_token)


def _serve(
    ctx: click.Context,
    host: str,
    port: int,
    path: Path,
    known: dict[str, users.User],
    certfile: Path | None,
    keyfile: Path | None,
    metrics_token: str | None,
) -> None:
    import uvicorn

    from conveyor.web.app import create_app
    from conveyor.web.state import ConsoleState

    url = check_reachable(ctx)  # the usual one line when the database is not there
    pool = open_pool(url, "the database", "conveyor-web")
    read_url = state(ctx).settings.read_url
    try:
        reads = open_pool(read_url, READ_ENV, "conveyor-web-read") if read_url else None
    except ConfigError:
        pool.close()
        raise
    secret = os.environ.get(SECRET_ENV) or secrets.token_urlsafe(32)
    console = ConsoleState(
        pool=pool,
        users=known,
        secret=secret,
        metrics_token=metrics_token,
        tls=certfile is not None,
        read_pool=reads,
    )
    scheme = "https" if certfile else "http"
    err_console.print(
        f"conveyor console on {scheme}://{host}:{port}/ ({len(known)} user(s) from {path})",
        markup=False,
    )
    try:
        uvicorn.run(
            create_app(console),
            host=host,
            port=port,
            ssl_certfile=str(certfile) if certfile else None,
            ssl_keyfile=str(keyfile) if keyfile else None,
            log_level="warning",
            access_log=False,
        )
    finally:
        pool.close()
        if reads is not None:
            reads.close()


def open_pool(url: str, what: str, application_name: str, max_size: int = 4) -> ConnectionPool:
    """An open autocommit pool on *url* (*what* names it in the one-line error if unreachable)."""
    from psycopg_pool import ConnectionPool

    pool: ConnectionPool = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs={
            "autocommit": True,
            "application_name": application_name,
            # The filters make each query's shape; no generic plan for a one-off filter.
            "prepare_threshold": None,
        },
    )
    try:
        pool.open(wait=True, timeout=15)
    except Exception as error:
        pool.close()
        raise ConfigError(f"the console cannot reach {what}: {error}") from error
    return pool


@web.group()
def user() -> None:
    """Manage the console's users file."""


@user.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(users.ROLES),
    required=True,
    help="reader sees everything but payloads; operator also acts.",
)
@_USERS_OPTION
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from stdin instead of prompting."
)
def user_add(name: str, role: str, users_file: Path | None, password_stdin: bool) -> None:
    """Add NAME (or replace their role and password) in the users file."""
    path = users_file or default_users_file()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    replaced = users.add(path, name, role, password)
    verb = "replaced" if replaced else "added"
    err_console.print(f"{verb} {name} ({role}) in {path}", markup=False)
