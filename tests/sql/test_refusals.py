"""Every `<feature>_disabled` refusal names the dot_config flag that switches it on, so a client
can say which `conveyor config set <flag> true` to run. Found in the SQL sources, checked against
the flag each function actually tests and against the keys an applied database holds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.phases import catalog, runner
from helpers import scalar

SQL_ROOT = Path(catalog.__file__).parent.parent / "sql"

# A refusal answer: jsonb_build_object('refused', true, 'reason', '<reason>', ...).
_REFUSAL = re.compile(
    r"jsonb_build_object\(\s*'refused',\s*true,\s*'reason',\s*'(?P<reason>\w+_disabled)'"
    r"(?P<rest>[^;]*?)\)\s*;",
    re.DOTALL,
)
_FLAG = re.compile(r"^\s*,\s*'flag',\s*'(?P<flag>[a-z0-9_.]+)'")
_CHECK = re.compile(r"fn_config_enabled\('(?P<flag>[a-z0-9_.]+)'\)")

# Switched by a row, not by a flag: the answer names the row instead.
_ROW_SWITCHES = {"outbound_worker_disabled": "'worker'"}


def _refusals() -> list[tuple[str, str, str]]:
    """(file, reason, the rest of the answer's arguments) for every *_disabled refusal."""
    found = []
    for path in sorted((SQL_ROOT / "functions").glob("*.sql")):
        for match in _REFUSAL.finditer(path.read_text(encoding="utf-8")):
            found.append((path.name, match.group("reason"), match.group("rest")))
    return found


REFUSALS = _refusals()


@pytest.fixture(scope="module", autouse=True)
def all_phases(dsn: str) -> None:
    """Every implemented phase on this module's database (0 and 1 come from the template)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for phase in catalog.PHASES:
            if phase.implemented and phase.number > 1:
                runner.ratify(conn, phase.number, "tests")
                runner.apply(conn, phase.number, "tests")


def test_the_sql_sources_hold_disabled_refusals_of_every_gated_feature() -> None:
    reasons = {reason for _, reason, _ in REFUSALS}
    assert {"job_substrate_disabled", "heartbeat_disabled", "dispatch_disabled"} <= reasons


@pytest.mark.parametrize(
    ("source", "reason", "rest"), REFUSALS, ids=[f"{f}:{r}" for f, r, _ in REFUSALS]
)
def test_every_disabled_refusal_names_the_flag_its_function_checks(
    db: psycopg.Connection[Any], source: str, reason: str, rest: str
) -> None:
    if reason in _ROW_SWITCHES:
        assert _ROW_SWITCHES[reason] in rest
        return
    named = _FLAG.match(rest)
    assert named, f"{source}: the {reason} answer has no 'flag' key"
    flag = named.group("flag")
    text = (SQL_ROOT / "functions" / source).read_text(encoding="utf-8")
    checks = {m.group("flag") for m in _CHECK.finditer(text)}
    assert flag in checks, f"{source}: names {flag}, but checks {sorted(checks)}"
    assert scalar(db, "SELECT conveyor.fn_config_get(%s) IS NOT NULL", (flag,)), (
        f"{flag} is not a dot_config key of an applied database"
    )


def test_a_disabled_call_answers_with_its_flag(db: psycopg.Connection[Any]) -> None:
    db.execute("UPDATE conveyor.dot_config SET value = 'false' WHERE key LIKE 'queue.%.enabled'")

    assert scalar(db, "SELECT conveyor.fn_job_enqueue(kind => 'demo.echo')") == {
        "refused": True,
        "reason": "job_substrate_disabled",
        "flag": "queue.job_substrate.enabled",
    }
    assert scalar(db, "SELECT conveyor.fn_heartbeat_stale_check()") == {
        "refused": True,
        "reason": "heartbeat_disabled",
        "flag": "queue.heartbeat.enabled",
    }
    assert scalar(db, "SELECT conveyor.fn_consumer_dispatch()") == {
        "refused": True,
        "reason": "dispatch_disabled",
        "flag": "queue.dispatch.enabled",
    }
