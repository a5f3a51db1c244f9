"""What runs on an embedded data directory, and who uses it: postmaster.pid, the ports, the lock
file under which starts and stops happen, and the handles file of the processes attached.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shlex
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import EmbeddedServerError

HOST = "127.0.0.1"
_READY_TIMEOUT = 10.0
_LOCK_TIMEOUT = 120.0


# --- the running server -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Postmaster:
    """What postmaster.pid says about a server (lines 1, 4, 6 and 8 of that file)."""

    pid: int
    port: int
    host: str  # "" when the server listens on no TCP address
    status: str

    def url(self, password: str | None = None) -> str:
        user = "postgres" if password is None else f"postgres:{password}"
        return f"postgresql://{user}@{self.host}:{self.port}/postgres"


def read_postmaster(data: Path) -> Postmaster | None:
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    fields = [line.strip() for line in lines] + [""] * 8
    try:
        pid, port = int(fields[0]), int(fields[3])
    except ValueError:
        return None  # being written
    return Postmaster(pid, port, _url_host(fields[5]), fields[7])


def _url_host(listen_addresses: str) -> str:
    first = listen_addresses.split(",")[0].strip()
    if first in {"*", "0.0.0.0"}:
        return HOST
    if first == "::":
        return "[::1]"
    return f"[{first}]" if ":" in first else first


def alive(pid: int) -> bool:
    """True if *pid* is a running process (zombies, which PID 1 may reap late, do not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill()
    fields = stat_line.rpartition(")")[2].split()
    return not fields or fields[0] != "Z"


def is_postgres(pid: int) -> bool:
    """True if *pid* is alive and, where procfs tells, a postgres (not a reused pid)."""
    if not alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("postgres")
    except OSError:
        return True


def live_server(data: Path) -> Postmaster | None:
    """The server running on *data*, once ready; None if there is none."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        postmaster = read_postmaster(data)
        if postmaster is None or not is_postgres(postmaster.pid):
            return None
        if postmaster.status == "ready":
            return postmaster
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"the PostgreSQL server on {data} (pid {postmaster.pid}) has been in state "
                f"{postmaster.status!r} for {_READY_TIMEOUT:.0f} s. Check it, or stop it with "
                f"`kill -INT {postmaster.pid}` and try again"
            )
        time.sleep(0.05)


def previous_port(data: Path) -> int | None:
    """The port of the last run (from postmaster.opts), so the URL tends to stay the same."""
    try:
        words = shlex.split((data / "postmaster.opts").read_text())
    except (OSError, ValueError):
        return None
    for flag, value in itertools.pairwise(words):
        if flag == "-p" and value.isdigit():
            return int(value)
    return None


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the postmaster does
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


# --- shared use by several processes ------------------------------------------------------------


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on *path* (start, stop and the handle list happen under it)."""
    with path.open("a") as handle:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"another process has held {path} for over {_LOCK_TIMEOUT:.0f} s; "
                        "find it with `fuser -v` and stop it, then try again"
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def live_handles(path: Path) -> list[str]:
    """The attached handles ('<pid> <token>' lines), minus those of processes that are gone."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line for line in lines if _handle_alive(line)]


def _handle_alive(line: str) -> bool:
    pid = line.partition(" ")[0]
    return pid.isdigit() and alive(int(pid))


def write_handles(path: Path, handles: list[str]) -> None:
    staging = path.with_name(path.name + ".tmp")
    staging.write_text("".join(f"{handle}\n" for handle in handles))
    staging.replace(path)
