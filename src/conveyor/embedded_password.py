"""The embedded server's password: random, kept in an owner-only file next to the data directory
(``<dir>.password``, mode 0600) that every conveyor process attaching to the server reads, so
other local users can reach the port but cannot log in. embedded.py decides when to use it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from conveyor.embedded_install import Account
from conveyor.errors import EmbeddedServerError

log = logging.getLogger(__name__)

# The method column of a pg_hba.conf line that lets everyone in (clusters from before passwords).
_TRUST = re.compile(r"^(\s*(?:local|host)\S*\s.*?\s)trust\s*$", re.MULTILINE)


def read(path: Path) -> str | None:
    """The password kept in *path*, or None if there is no such file."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def create(path: Path) -> str:
    """Make a new random password and keep it in *path*, readable by its owner only."""
    password = secrets.token_urlsafe(32)  # URL-safe: it goes into the URL as it is
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(password + "\n")
    return password


@contextlib.contextmanager
def pwfile(password: str, account: Account | None) -> Iterator[Path]:
    """A private copy of *password* for initdb (which runs as *account*), removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-initdb-"))
    try:
        path = scratch / "password"
        path.write_text(password + "\n")
        path.chmod(0o600)
        if account is not None:
            os.chown(scratch, account.uid, account.gid)
            os.chown(path, account.uid, account.gid)
        yield path
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def close_trust(url: str, path: Path, data_dir: Path) -> str:
    """Give a cluster from before passwords (trust) one, kept in *path*; return it.

    Connects through *url* while trust still lets it, sets the superuser's password, rewrites
    every trust line of pg_hba.conf to scram-sha-256 and reloads the configuration.
    """
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            password = create(path)
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(password)))
            row = conn.execute("SHOW hba_file").fetchone()
            assert row is not None
            hba = Path(str(row[0]))
            hba.write_text(_TRUST.sub(r"\1scram-sha-256", hba.read_text()))
            conn.execute("SELECT pg_reload_conf()")
    except psycopg.OperationalError as error:
        raise EmbeddedServerError(
            f"the embedded PostgreSQL on {data_dir} asks for a password, but {path}, where "
            f"conveyor keeps it, is missing ({error}). Restore that file, or stop the server and "
            f"move {data_dir} aside to start afresh"
        ) from error
    log.warning(
        "the embedded PostgreSQL on %s let every local user in (trust); it now asks for the "
        "password kept in %s",
        data_dir,
        path,
    )
    return password
