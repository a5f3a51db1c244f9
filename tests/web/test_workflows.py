"""The workflows pages over HTTP and in Chromium, on a module database with phase 6 applied: the
list and the graph for both roles, and an operator cancelling or completing an operator step."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from conveyor.phases import runner
from helpers import scalar
from web.support import PASSWORDS, SECRET_MARKER

Conn = psycopg.Connection[Any]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ("queue.job_substrate.enabled", "queue.lease_reaper.enabled", "workflow.mot.enabled")


@pytest.fixture(scope="module")
def web_dsn(dsn: str) -> str:
    """The module database with phases 2, 3, 4 and 6 and their flags on (overrides conftest's)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for number in (2, 3, 4, 6):
            runner.ratify(conn, number, "tests")
            runner.apply(conn, number, "tests")
        conn.execute(
            "UPDATE conveyor.dot_config SET value = 'true' WHERE key = ANY(%s)", (list(FLAGS),)
        )
    return dsn


def approval_flow(sql: Conn, queue: str) -> int:
    """Emit prepare → approve (an operator step) → ship on *queue*; the workflow's id."""
    name = f"t.{uuid.uuid4().hex[:10]}"
    steps = [
        {"key": "prepare", "kind": "demo.step", "executor": "dot", "queue": queue},
        {
            "key": "approve",
            "kind": "demo.approve",
            "executor": "operator",
            "parents": ["prepare"],
            "queue": f"{queue}-people",
        },
        {
            "key": "ship",
            "kind": "demo.step",
            "executor": "dot",
            "parents": ["approve"],
            "queue": queue,
        },
    ]
    sql.execute("SELECT fn_mot_template_register(name => %s, steps => %s)", (name, Jsonb(steps)))
    answer = scalar(
        sql,
        "SELECT fn_mot_graph_emit(template => %s, params => %s)",
        (name, Jsonb({"secret": SECRET_MARKER})),
    )
    return int(answer["workflow_id"])


def states(sql: Conn, workflow_id: int) -> dict[str, str]:
    rows = sql.execute(
        "SELECT step_key, state FROM v_job_workflow_step WHERE workflow_id = %s", (workflow_id,)
    ).fetchall()
    return {str(key): str(state) for key, state in rows}


def run_prepare(sql: Conn, queue: str) -> None:
    """Claim and complete the one queued job of *queue*: the prepare step."""
    claimed = scalar(sql, "SELECT fn_job_claim(worker => 'tests', queues => ARRAY[%s])", (queue,))
    (job,) = claimed["jobs"]
    done = scalar(sql, "SELECT fn_job_complete(%s, %s)", (job["job_id"], job["lease_token"]))
    assert done.get("ok"), done


@pytest.mark.parametrize("who", ["alice", "rita"])
def test_the_workflows_pages_render_for_both_roles_without_payloads(
    login: Callable[[str], httpx.Client], sql: Conn, queue: str, who: str
) -> None:
    workflow_id = approval_flow(sql, queue)
    client = login(who)

    listing = client.get("/workflows")
    active = client.get("/workflows?status=active")
    detail = client.get(f"/workflows/{workflow_id}")

    for answer in (listing, active, detail):
        assert answer.status_code == 200, answer.text
        assert 'href="/workflows"' in answer.text  # the nav link, with phase 6 applied
        assert SECRET_MARKER not in answer.text
    assert f'data-workflow="{workflow_id}"' in listing.text
    assert f'data-workflow="{workflow_id}"' in active.text
    for key in ("prepare", "approve", "ship"):
        assert f'data-step="{key}"' in detail.text
    job_id = scalar(
        sql,
        "SELECT job_id FROM job_workflow_step WHERE workflow_id = %s AND step_key = 'prepare'",
        (workflow_id,),
    )
    assert f'href="/jobs/{job_id}"' in detail.text
    offered = "Cancel workflow" in detail.text
    assert offered is (who == "alice")


def test_a_reader_cannot_cancel_a_workflow_or_complete_a_step(
    login: Callable[[str], httpx.Client], sql: Conn, queue: str
) -> None:
    workflow_id = approval_flow(sql, queue)
    run_prepare(sql, queue)
    reader = login("rita")
    token = reader.csrf  # type: ignore[attr-defined]
    assert "Complete step" not in reader.get(f"/workflows/{workflow_id}").text

    cancel = reader.post("/workflows/cancel", data={"csrf": token, "workflow_id": workflow_id})
    complete = reader.post(
        "/workflows/complete-step",
        data={"csrf": token, "workflow_id": workflow_id, "step": "approve"},
    )

    assert cancel.status_code == 403
    assert complete.status_code == 403
    assert "reader" in cancel.text
    assert scalar(sql, "SELECT status FROM job_workflow WHERE id = %s", (workflow_id,)) == "active"
    assert states(sql, workflow_id)["approve"] == "queued"


def test_an_operator_completes_an_operator_step_and_the_workflow_moves_on(
    login: Callable[[str], httpx.Client], sql: Conn, queue: str
) -> None:
    workflow_id = approval_flow(sql, queue)
    run_prepare(sql, queue)
    client = login("alice")
    assert "Complete step" in client.get(f"/workflows/{workflow_id}").text
    assert "approve (an operator)" in client.get("/workflows?status=active").text
    token = client.csrf  # type: ignore[attr-defined]

    answer = client.post(
        "/workflows/complete-step",
        data={
            "csrf": token,
            "workflow_id": workflow_id,
            "step": "approve",
            "result": '{"approved": true}',
        },
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == f"/workflows/{workflow_id}"
    assert states(sql, workflow_id) == {
        "prepare": "succeeded",
        "approve": "succeeded",
        "ship": "queued",
    }
    by, result = sql.execute(
        "SELECT st.completed_by, jq.result FROM job_workflow_step AS st"
        " JOIN job_queue AS jq ON jq.id = st.job_id"
        " WHERE st.workflow_id = %s AND st.step_key = 'approve'",
        (workflow_id,),
    ).fetchone() or (None, None)
    assert by == "alice"
    assert result == {"approved": True}
    assert "step approve completed by alice" in client.get(f"/workflows/{workflow_id}").text


def test_completing_a_step_whose_parents_still_run_comes_back_as_a_message(
    login: Callable[[str], httpx.Client], sql: Conn, queue: str
) -> None:
    workflow_id = approval_flow(sql, queue)
    client = login("alice")
    back = f"/workflows/{workflow_id}"

    answer = client.post(
        "/workflows/complete-step",
        data={"csrf": client.csrf, "workflow_id": workflow_id, "step": "approve"},  # type: ignore[attr-defined]
        headers={"referer": f"{client.base_url}{back}"},
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == back
    assert "not_ready" in client.get(back).text
    assert states(sql, workflow_id)["approve"] == "waiting"


def test_a_result_that_is_not_a_json_object_is_one_line_and_changes_nothing(
    login: Callable[[str], httpx.Client], sql: Conn, queue: str
) -> None:
    workflow_id = approval_flow(sql, queue)
    run_prepare(sql, queue)
    client = login("alice")

    answer = client.post(
        "/workflows/complete-step",
        data={
            "csrf": client.csrf,  # type: ignore[attr-defined]
            "workflow_id": workflow_id,
            "step": "approve",
            "result": "[1, 2]",
        },
    )

    assert answer.status_code == 400
    assert answer.text.count("\n") == 0 and "JSON object" in answer.text
    assert states(sql, workflow_id)["approve"] == "queued"


def test_an_operator_cancels_a_workflow_recorded_with_their_name(
    login: Callable[[str], httpx.Client], sql: Conn, queue: str
) -> None:
    workflow_id = approval_flow(sql, queue)
    client = login("alice")

    answer = client.post(
        "/workflows/cancel",
        data={"csrf": client.csrf, "workflow_id": workflow_id, "reason": "wrong order"},  # type: ignore[attr-defined]
    )

    assert answer.status_code == 303
    status, by, reason = sql.execute(
        "SELECT status, cancelled_by, cancel_reason FROM job_workflow WHERE id = %s",
        (workflow_id,),
    ).fetchone() or (None, None, None)
    assert (status, by, reason) == ("cancelled", "alice", "wrong order")
    assert set(states(sql, workflow_id).values()) == {"cancelled"}
    page = client.get(f"/workflows/{workflow_id}").text
    assert "Cancel workflow" not in page
    assert f"workflow {workflow_id} cancelled" in page


def test_the_list_is_filtered_by_status_and_paginated_by_id(
    login: Callable[[str], httpx.Client], sql: Conn, queue: str
) -> None:
    first = approval_flow(sql, queue)
    sql.execute("SELECT fn_job_workflow_cancel(%s, 'test', 'tests')", (first,))
    name = scalar(sql, "SELECT template FROM job_workflow WHERE id = %s", (first,))
    for _ in range(51):  # one more than a page
        sql.execute("SELECT fn_mot_graph_emit(template => %s)", (name,))
    client = login("rita")

    newest = client.get("/workflows")
    cancelled = client.get("/workflows?status=cancelled")
    older = re.search(r'href="/workflows\?([^"]*before=\d+)" rel="next"', newest.text)
    assert older, "the first page links to the next"
    second = client.get(f"/workflows?{older.group(1).replace('&amp;', '&')}")

    assert f'data-workflow="{first}"' not in newest.text
    assert newest.text.count("data-workflow=") == 50
    assert f'data-workflow="{first}"' in second.text
    assert f'data-workflow="{first}"' in cancelled.text
    assert 'hint active"' not in cancelled.text.split("<tbody>")[1]
    bad = client.get("/workflows?status=sleeping")
    assert bad.status_code == 400 and "not one of active" in bad.text


def test_an_unknown_workflow_is_a_404_saying_so(login: Callable[[str], httpx.Client]) -> None:
    answer = login("rita").get("/workflows/999999999")

    assert answer.status_code == 404
    assert "no workflow 999999999" in answer.text


@pytest.fixture
def page(console_url: str) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():  # pragma: no cover - CI installs Chromium
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(base_url=console_url)
        context.set_default_timeout(20_000)  # a failure guard; pages answer in milliseconds
        yield context.new_page()
        context.close()
        browser.close()


def test_in_a_browser_an_operator_opens_a_workflow_and_sees_its_steps(
    page: Any, sql: Conn, queue: str
) -> None:
    from playwright.sync_api import expect

    workflow_id = approval_flow(sql, queue)
    run_prepare(sql, queue)
    page.goto("/")
    page.get_by_label("Name").fill("alice")
    page.get_by_label("Password").fill(PASSWORDS["alice"])
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("link", name="Workflows").click()
    page.locator(f'tr[data-workflow="{workflow_id}"]').get_by_role("link").first.click()

    expect(page.locator("h1")).to_have_text(f"Workflow {workflow_id}")
    expect(page.locator("svg.graph a[data-step]")).to_have_count(3)
    expect(page.locator('tr[data-step="prepare"]')).to_contain_text("succeeded")
    expect(page.locator('tr[data-step="approve"]')).to_contain_text("queued")
    expect(page.locator('tr[data-step="ship"]')).to_contain_text("waiting")
    page.locator('tr[data-step="approve"]').get_by_role("button", name="Complete step").click()
    expect(page.get_by_role("status")).to_contain_text("step approve completed by alice")
    expect(page.locator('tr[data-step="ship"]')).to_contain_text("queued")
    assert states(sql, workflow_id)["ship"] == "queued"
