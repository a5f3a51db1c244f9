"""Two PostgreSQL clusters of the test's own (the embedded package's programs): a primary and a
streaming standby made with pg_basebackup, synchronous replication, promote and stop."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg

from conveyor import embedded_install as install
from conveyor.embedded_state import free_port


class Cluster:
    """One cluster in *directory* (data/, log, socket), on a free loopback port."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.data = directory / "data"
        self.log = directory / "server.log"
        self.port = free_port()
        self.account = install.server_account()  # PostgreSQL refuses to run as root
        self.bin = install.bin_dir(self.account)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *command: str) -> str:
        status, output = install.run([str(self.bin / command[0]), *command[1:]], self.account)
        assert status == 0, f"{command[0]} failed ({status}): {output}\n{self.server_log()}"
        return output

    def _own(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.account is not None:
            os.chown(self.directory, self.account.uid, self.account.gid)

    def initdb(self) -> None:
        """A new primary (synchronous replication starts with `make_synchronous`)."""
        self._own()
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("fsync = off\n")

    def basebackup(self, primary: Cluster) -> None:
        """A streaming standby of *primary* (pg_basebackup -R), named "standby" there."""
        self._own()
        self._run(
            "pg_basebackup", "-D", str(self.data), "-h", "127.0.0.1", "-p", str(primary.port),
            "-U", "postgres", "-X", "stream", "-R", "--no-sync", "-c", "fast",
        )  # fmt: skip
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(
                f"primary_conninfo = 'host=127.0.0.1 port={primary.port} user=postgres "
                "application_name=standby'\n"
            )

    def allow(self, network: str, settings: str = "") -> None:
        """Let *network* (CIDR) in without a password, and append *settings* to the config."""
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {network} trust\n")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(settings)

    def start(self, listen: str = "127.0.0.1") -> None:
        """Start, listening on *listen* (comma-separated addresses) and the port."""
        options = f"-h {listen} -p {self.port} -k {self.directory}"
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", options,
        )  # fmt: skip

    def promote(self) -> None:
        self._run("pg_ctl", "promote", "-D", str(self.data), "-w", "-t", "60")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def server_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def make_synchronous(self, primary: Cluster, timeout: float = 60) -> None:
        """Make *primary* wait for this standby at every commit; return once it does."""
        deadline = time.monotonic() + timeout  # a failure guard only
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
            conn.execute("SELECT pg_reload_conf()")
            while True:
                row = conn.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'"
                ).fetchone()
                if row is not None and row[0] == "sync":
                    return
                assert time.monotonic() < deadline, f"standby not streaming: {self.server_log()}"
                time.sleep(0.1)


def multi_host_url(clusters: list[Cluster], dbname: str) -> str:
    """A libpq URL naming every cluster, connecting to whichever accepts writes."""
    hosts = ",".join(f"127.0.0.1:{c.port}" for c in clusters)
    return f"postgresql://postgres@{hosts}/{dbname}?target_session_attrs=read-write"
