"""Workflow tests: a module database with phases 2, 3, 4 and 6 applied on the template's 0 and 1,
the job substrate, the lease reaper and MOT workflows switched on, and retries without delay."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conveyor.phases import runner
from helpers import conveyor_processes

Conn = psycopg.Connection[Any]

FLAGS = ("queue.job_substrate.enabled", "queue.lease_reaper.enabled", "workflow.mot.enabled")


@pytest.fixture(scope="module")
def workflow_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for number in (2, 3, 4, 6):
            runner.ratify(conn, number, "tests")
            result = runner.apply(conn, number, "tests")
            assert result.already_applied or (result.gate is not None and result.gate.passed), (
                result.gate.failures if result.gate else "no gate run"
            )
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true' WHERE key = ANY(%s)", (list(FLAGS),)
        )
        conn.execute(
            "UPDATE conveyor.dot_config SET value = '0' WHERE key = 'queue.retry.base_seconds'"
        )
    return dsn


@pytest.fixture
def sql(workflow_dsn: str) -> Any:
    """An autocommit connection (search_path conveyor, public)."""
    with psycopg.connect(
        workflow_dsn, autocommit=True, options="-c search_path=conveyor,public"
    ) as conn:
        yield conn


@pytest.fixture
def queue() -> str:
    """A queue name of this test's own, so committed jobs of other tests never mix in."""
    return f"q{uuid.uuid4().hex[:10]}"


@pytest.fixture
def template(sql: Conn, queue: str) -> Callable[..., str]:
    """Register a template of this test's own; steps get the test's queue unless they name one."""

    def register(steps: list[dict[str, Any]], name: str | None = None) -> str:
        name = name or f"t.{uuid.uuid4().hex[:10]}"
        for step in steps:
            step.setdefault("queue", queue)
            step.setdefault("executor", "dot")
            step.setdefault("kind", "demo.step")
        sql.execute(
            "SELECT conveyor.fn_mot_template_register(name => %s, steps => %s)",
            (name, Jsonb(steps)),
        )
        return name

    return register


@pytest.fixture
def start_worker(
    workflow_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `conveyor worker --app workflowapp:registry ARGS…` as a subprocess."""
    yield from conveyor_processes(
        workflow_dsn,
        tmp_path,
        ["worker", "--app", "workflowapp:registry", "--poll-interval", "0.05"],
    )
