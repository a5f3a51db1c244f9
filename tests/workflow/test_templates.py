"""mot_template: validated on insert (the error names the step, nothing is written), versioned,
immutable; mot is never an executor anywhere."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from helpers import scalar

Conn = psycopg.Connection[Any]


def register(conn: Conn, name: str, steps: Any) -> dict[str, Any]:
    answer: dict[str, Any] = scalar(
        conn, "SELECT fn_mot_template_register(name => %s, steps => %s)", (name, Jsonb(steps))
    )
    return answer


def step(key: str, *parents: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "kind": "demo.step", "executor": "dot", "parents": list(parents), **fields}


BAD_TEMPLATES = {
    "cycle": (
        [step("a"), step("b", "a", "d"), step("c", "b"), step("d", "c")],
        "step b: is on a cycle",
    ),
    "unknown parent": ([step("a"), step("b", "aa")], "step b: parent aa is not a step"),
    "unknown executor": ([step("a"), step("b", "a", executor="robot")], "step b: executor robot"),
    "mot executor": ([step("a"), step("plan", "a", executor="mot")], "step plan: names mot"),
    "MOT in capitals": ([step("plan", executor="MOT")], "step plan: names mot"),
    "duplicate key": ([step("a"), step("b", "a"), step("b")], "step b: is a duplicate key"),
    "self parent": ([step("a", "a")], "step a: names itself"),
    "bad policy": ([step("a", on_failure="retry_forever")], "step a: on_failure"),
    "unknown field": ([{**step("a"), "parent": ["x"]}], "step a: has an unknown field parent"),
    "bad kind": ([step("a", kind="no spaces allowed")], "step a: kind"),
    "empty": ([], "steps must be a non-empty"),
}


@pytest.mark.parametrize("case", BAD_TEMPLATES, ids=str)
def test_a_bad_template_is_refused_naming_the_step_and_nothing_is_written(
    sql: Conn, case: str
) -> None:
    steps, message = BAD_TEMPLATES[case]
    before = scalar(sql, "SELECT count(*) FROM mot_template")

    with pytest.raises(errors.InvalidParameterValue, match=message) as raised:
        register(sql, "t.bad", steps)

    assert raised.value.diag.message_hint
    assert scalar(sql, "SELECT count(*) FROM mot_template") == before


def test_a_wide_fan_in_and_a_cycle_behind_a_long_chain_are_checked(db: Conn) -> None:
    fan_in = [step(f"p{i}") for i in range(2000)] + [step("join", *[f"p{i}" for i in range(2000)])]
    assert register(db, "t.wide", fan_in)["created"] is True

    chain = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, 30)]
    chain[0]["parents"] = ["s29"]
    with pytest.raises(errors.InvalidParameterValue, match="step s0: is on a cycle"):
        register(db, "t.loop", [*chain, step("tail", "s5")])


def test_registering_the_same_steps_again_keeps_the_version_and_a_change_is_a_new_one(
    db: Conn,
) -> None:
    first = register(db, "t.versions", [step("a")])
    again = register(db, "t.versions", [step("a")])
    changed = register(db, "t.versions", [step("a"), step("b", "a")])

    assert (first["version"], first["created"]) == (1, True)
    assert (again["version"], again["created"]) == (1, False)
    assert (changed["version"], changed["created"]) == (2, True)


def test_a_stored_version_cannot_be_changed(db: Conn) -> None:
    register(db, "t.frozen", [step("a")])

    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="immutable"):
        db.execute(
            "UPDATE mot_template SET steps = %s WHERE name = 't.frozen'",
            (Jsonb([step("a"), step("b")]),),
        )


def test_mot_can_be_no_executor_of_a_job_subscription_or_a_step(db: Conn) -> None:
    with pytest.raises(errors.CheckViolation, match="executor_kind_not_mot_check"):
        db.execute("INSERT INTO executor_kind (executor) VALUES ('mot')")
    db.rollback()
    db.execute("ALTER TABLE mot_template DISABLE TRIGGER mot_template_guard_trg")
    with pytest.raises(errors.CheckViolation, match="mot_template_executor_check"):
        db.execute(
            "INSERT INTO mot_template (name, version, steps) VALUES ('t.sneaky', 1, %s)",
            (Jsonb([step("a", executor="mot")]),),
        )
