"""Fixtures of the ecosystem tests: the module database with the job substrate switched on, and
the client under test (the sync `conveyor.jobs` or the asyncio `conveyor.aio`) behind one face.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from ecosystem.support import Client


@pytest.fixture(scope="module")
def substrate_dsn(dsn: str) -> str:
    """The module's database (phases 0–1) with the job substrate on and retries immediate."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true'"
            " WHERE key = 'queue.job_substrate.enabled'"
        )
        conn.execute(
            "UPDATE conveyor.dot_config SET value = '0' WHERE key = 'queue.retry.base_seconds'"
        )
    return dsn


@pytest.fixture(params=["sync", "async"])
def client(request: pytest.FixtureRequest, substrate_dsn: str) -> Iterator[Client]:
    """The sync client, then the asyncio client, on the substrate database."""
    opened = Client(str(request.param), substrate_dsn)
    yield opened
    opened.close()
