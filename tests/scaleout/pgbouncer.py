"""A PgBouncer (Debian's package) in transaction pooling mode in front of the test server.

It listens on a free loopback port, logs in to the server as the test server's own user (so any
client user name is accepted: ``auth_type = any``) and serves every database of that server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor.embedded_install import server_account
from conveyor.embedded_state import free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def available() -> bool:
    """True when a pgbouncer binary is installed."""
    return Path(BINARY).is_file()


class PgBouncer:
    """One pgbouncer process; `url_for(dsn)` is *dsn* routed through it."""

    def __init__(self, server_dsn: str, directory: Path, pool_size: int = 10) -> None:
        self.server = conninfo_to_dict(server_dsn)
        self.directory = directory
        self.pool_size = pool_size
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        server = self.server
        target = {
            "host": str(server.get("host") or "127.0.0.1"),
            "port": str(server.get("port") or 5432),
            "user": str(server.get("user") or "postgres"),
        }
        if server.get("password"):
            target["password"] = str(server["password"])
        line = " ".join(f"{key}={value}" for key, value in target.items())
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = {line}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.directory}\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n"
        )
        ini.chmod(0o600)
        account = server_account()  # pgbouncer refuses to run as root
        if account is not None:
            os.chown(self.directory, account.uid, account.gid)
            os.chown(ini, account.uid, account.gid)
        with (self.directory / "pgbouncer.out").open("wb") as out:
            self.process = subprocess.Popen(
                [BINARY, str(ini)],
                stdout=out,
                stderr=subprocess.STDOUT,
                user=None if account is None else account.uid,
                group=None if account is None else account.gid,
                extra_groups=None if account is None else [],
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30  # a failure guard only
        url = self.url_for(make_conninfo("", **self.server_params()))
        while True:
            try:
                with psycopg.connect(url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                assert self.process is not None
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"pgbouncer did not start: {self.log()}") from None
                time.sleep(0.1)

    def server_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.server.items() if v is not None}

    def url_for(self, dsn: str) -> str:
        """*dsn* (a database on the test server) reached through this PgBouncer."""
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
        params["host"], params["port"] = "127.0.0.1", str(self.port)
        params.pop("password", None)  # auth_type = any: pgbouncer logs in with its own
        return make_conninfo("", **params)

    def log(self) -> str:
        """pgbouncer's output and log file, for a failure message."""
        texts = []
        for name in ("pgbouncer.out", "pgbouncer.log"):
            path = self.directory / name
            if path.exists():
                texts.append(path.read_text(errors="replace"))
        return "\n".join(texts) or "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
