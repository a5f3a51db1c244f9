"""One PostgreSQL server for the session; a database per module cloned from a migrated template.

The server is the one in CONVEYOR_TEST_DATABASE_URL / CONVEYOR_DATABASE_URL / DATABASE_URL (a
superuser or CREATEDB role), else an embedded PostgreSQL started for the session.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import SEARCH_PATH_OPTION, apply_phases, set_flag, with_database

TEMPLATE_PHASES = (0, 1)


def _admin_url_from_env() -> str | None:
    for name in ("CONVEYOR_TEST_DATABASE_URL", "CONVEYOR_DATABASE_URL", "DATABASE_URL"):
        if os.environ.get(name):
            return os.environ[name]
    return None


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a role that may create databases, on the server under test."""
    url = _admin_url_from_env()
    if url is not None:
        yield url
        return
    from conveyor.embedded import EmbeddedServer

    base = Path("/tmp") / f"conveyor-test-{os.getpid()}"
    base.mkdir(mode=0o755, exist_ok=True)
    server = EmbeddedServer(base / "pgdata")
    server.start()
    try:
        yield server.dsn
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _create_database(admin_dsn: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        if template:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            admin.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_dsn, name)


def _drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> Iterator[str]:
    """Name of a template database with phases 0 and 1 applied (flags at their defaults)."""
    name = f"conveyor_tpl_{uuid.uuid4().hex[:8]}"
    dsn = _create_database(pg_admin_dsn, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_phases(conn, TEMPLATE_PHASES)
        yield name
    finally:
        _drop_database(pg_admin_dsn, name)


@pytest.fixture(scope="module")
def dsn(pg_admin_dsn: str, template_db: str) -> Iterator[str]:
    """URL of this test module's own database, cloned from the template."""
    name = f"conveyor_t_{uuid.uuid4().hex[:10]}"
    url = _create_database(pg_admin_dsn, name, template=template_db)
    try:
        yield url
    finally:
        _drop_database(pg_admin_dsn, name)


@pytest.fixture
def connect(dsn: str) -> Iterator[Callable[..., psycopg.Connection[Any]]]:
    """Factory of connections to the module's database (search_path conveyor, public)."""
    opened: list[psycopg.Connection[Any]] = []

    def factory(autocommit: bool = True) -> psycopg.Connection[Any]:
        conn = psycopg.connect(dsn, autocommit=autocommit, options=SEARCH_PATH_OPTION)
        opened.append(conn)
        return conn

    yield factory
    for conn in opened:
        conn.close()


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection inside a transaction that is rolled back after the test."""
    conn = psycopg.connect(dsn, autocommit=False, options=SEARCH_PATH_OPTION)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture
def jobs(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The `db` transaction with the job substrate switched on (rolled back after the test)."""
    set_flag(db, "queue.job_substrate.enabled", True)
    return db


@pytest.fixture
def empty_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """URL of a brand-new empty database, dropped after the test."""
    name = f"conveyor_e_{uuid.uuid4().hex[:10]}"
    url = _create_database(pg_admin_dsn, name)
    try:
        yield url
    finally:
        _drop_database(pg_admin_dsn, name)
