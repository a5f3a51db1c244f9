"""Console tests run a real `conveyor web` process against a module database with phases 0–3
applied and the job substrate on; users alice (operator) and rita (reader) log in over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from conveyor.phases import runner
from conveyor.web import users
from web.support import METRICS_TOKEN, PASSWORDS, csrf_of, free_port


@pytest.fixture(scope="module")
def web_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for number in (2, 3):
            runner.ratify(conn, number, "tests")
            runner.apply(conn, number, "tests")
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true'"
            " WHERE key IN ('queue.job_substrate.enabled', 'queue.lease_reaper.enabled')"
        )
    return dsn


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web") / "users"
    users.add(path, "alice", "operator", PASSWORDS["alice"])
    users.add(path, "rita", "reader", PASSWORDS["rita"])
    return path


@pytest.fixture(scope="module")
def console_env() -> dict[str, str]:
    """More environment for the module's `conveyor web` (a module may override this)."""
    return {}


@pytest.fixture(scope="module")
def console_url(
    web_dsn: str,
    users_file: Path,
    console_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """Base URL of a `conveyor web` process serving the module database."""
    log_dir = tmp_path_factory.mktemp("web-log")
    with serve_console(web_dsn, users_file, log_dir, console_env) as url:
        yield url


@contextmanager
def serve_console(
    dsn: str, users_file: Path, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run `conveyor web` on *dsn* (plus *env*) until the block ends; its base URL."""
    port = free_port()
    log_path = log_dir / "console.log"
    env = {**os.environ, "CONVEYOR_DATABASE_URL": dsn, **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "-v",
                "web",
                "--port",
                str(port),
                "--users",
                str(users_file),
                "--metrics-token",
                METRICS_TOKEN,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # a failure guard: the server answers well before
    while True:
        if process.poll() is not None:
            raise AssertionError(f"conveyor web exited: {log_path.read_text()}")
        try:
            if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"conveyor web did not answer: {log_path.read_text()}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def login(console_url: str) -> Iterator[Callable[[str], httpx.Client]]:
    """Factory: an httpx client logged in as *name* (the token of its session in .csrf)."""
    opened: list[httpx.Client] = []

    def factory(name: str) -> httpx.Client:
        client = httpx.Client(base_url=console_url, timeout=30)
        opened.append(client)
        token = csrf_of(client.get("/login").text)
        answer = client.post(
            "/login",
            data={"csrf": token, "username": name, "password": PASSWORDS[name], "next": "/"},
        )
        assert answer.status_code == 303, answer.text
        client.csrf = csrf_of(client.get("/").text)  # type: ignore[attr-defined]
        return client

    yield factory
    for client in opened:
        client.close()


@pytest.fixture
def sql(web_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        web_dsn, autocommit=True, options="-c search_path=conveyor,public"
    ) as conn:
        yield conn


@pytest.fixture
def queue() -> str:
    """A queue of this test's own."""
    return f"q{uuid.uuid4().hex[:10]}"
