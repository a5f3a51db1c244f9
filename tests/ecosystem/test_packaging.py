"""`pip install` from a built wheel, as a user gets conveyor: the wheel carries the SQL files and
py.typed, `conveyor demo` runs from a fresh virtualenv, a user's test suite runs with the
conveyor.testing plugin on its embedded server, and a user's module passes
`mypy --strict` against the installed package (while a wrong call is caught)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from ecosystem.support import USER_APP, USER_TESTS

ROOT = Path(__file__).resolve().parents[2]

USER_CODE = '''
"""A user's module, type-checked against the installed conveyor."""
from typing import Any

import psycopg

import conveyor
from conveyor import JobContext, Registry, aio
from conveyor.testing import Drained, drain

registry = Registry()


@registry.handler("mail.welcome", transactional=True)
def send_welcome(context: JobContext) -> dict[str, str]:
    return {"sent_to": str(context.payload["email"])}


def sign_up(conn: psycopg.Connection[Any], email: str) -> int:
    with conn.transaction():
        return conveyor.enqueue(conn, "mail.welcome", {"email": email}, queue="mail")


async def sign_up_async(conn: psycopg.AsyncConnection[Any], email: str) -> list[int]:
    first = await aio.enqueue(conn, "mail.welcome", {"email": email})
    return [first, *await aio.enqueue_many(conn, [{"kind": "mail.digest"}])]


def run_all(conn: psycopg.Connection[Any]) -> Drained:
    return drain(conn, registry)
'''

WRONG_CODE = """
import psycopg
import conveyor

def broken(conn: psycopg.Connection[tuple[int]]) -> str:
    return conveyor.enqueue(conn, "mail.welcome", priority="high")
"""


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_runs_the_demo_and_type_checks_user_code(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env.pop("PYTHONPATH", None)
    source = tmp_path / "source"  # build from a copy: setuptools writes build/ and egg-info
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)

    built = run(
        [sys.executable, "-m", "pip", "wheel", ".", "-w", str(tmp_path / "wheel"), "--no-deps"],
        source,
        env,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "wheel").glob("conveyor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sql_files = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src").rglob("*.sql")}
    assert sql_files and sql_files <= names, sorted(sql_files - names)[:5]
    assert "conveyor/py.typed" in names

    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], tmp_path, env).returncode == 0
    python = venv / "bin" / "python"
    installed = run([str(python), "-m", "pip", "install", "-q", str(wheel)], tmp_path, env)
    assert installed.returncode == 0, installed.stderr

    data_dir = Path(tempfile.mkdtemp(prefix="conveyor-wheel-"))  # not under pytest's 0700 dir:
    data_dir.chmod(0o755)  # as root the embedded server runs as conveyor-pg, which must enter it
    try:
        demo = run(
            [str(venv / "bin" / "conveyor"), "--data-dir", str(data_dir / "pgdata"), "demo"],
            tmp_path,
            env,
        )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "ran: 5 jobs by hand through the SQL functions" in demo.stdout
    located = run([str(python), "-c", "import conveyor; print(conveyor.__file__)"], tmp_path, env)
    assert str(venv) in located.stdout  # the wheel's copy, not the source tree

    # A user's own test suite with the plugin, from the wheel, on its default embedded server.
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text(textwrap.dedent(USER_APP))
    (project / "test_app.py").write_text(textwrap.dedent(USER_TESTS))
    with_pytest = run([str(python), "-m", "pip", "install", "-q", "pytest"], tmp_path, env)
    assert with_pytest.returncode == 0, with_pytest.stderr
    suite = run(
        [str(python), "-m", "pytest", "-p", "conveyor.testing", "-p", "no:cacheprovider"],
        project,
        {**env, "PYTHONPATH": str(project)},
    )
    assert "1 failed, 4 passed" in suite.stdout, suite.stdout + suite.stderr

    (tmp_path / "user_app.py").write_text(USER_CODE)
    (tmp_path / "wrong_app.py").write_text(WRONG_CODE)
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
    mypy += ["--python-executable", str(python), "--config-file", os.devnull]
    passed = run([*mypy, "user_app.py"], tmp_path, env)
    assert passed.returncode == 0, passed.stdout
    caught = run([*mypy, "wrong_app.py"], tmp_path, env)
    assert caught.returncode == 1, caught.stdout
    assert 'Argument "priority" to "enqueue" has incompatible type "str"' in caught.stdout
