"""The console over HTTP (a real `conveyor web` process): login, rights, CSRF, pages, actions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from helpers import scalar, wait_until
from web.support import (
    METRICS_TOKEN,
    SECRET_MARKER,
    csrf_of,
    dead_letter,
    enqueue,
    free_port,
)

PAGES = ["/", "/queues", "/jobs", "/dead-letters", "/components", "/phases"]


def paused_queues(sql: psycopg.Connection[Any]) -> list[str]:
    value = scalar(
        sql,
        "SELECT coalesce((SELECT value FROM dot_config WHERE key = 'queue.paused_queues'), '[]')",
    )
    return list(value)


@pytest.mark.parametrize("path", [*PAGES, "/jobs/1", "/dead-letters/1", "/metrics"])
def test_every_page_needs_a_login(console_url: str, path: str) -> None:
    answer = httpx.get(f"{console_url}{path}", follow_redirects=False)

    if path == "/metrics":
        assert answer.status_code == 401
    else:
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login?next=")


def test_a_wrong_password_is_refused(console_url: str) -> None:
    with httpx.Client(base_url=console_url) as client:
        token = csrf_of(client.get("/login").text)
        answer = client.post(
            "/login", data={"csrf": token, "username": "alice", "password": "not-hers"}
        )
        assert answer.status_code == 401
        assert "Wrong name or password" in answer.text
        assert client.get("/", follow_redirects=False).status_code == 303


def test_a_session_cookie_that_is_not_signed_by_the_server_is_ignored(console_url: str) -> None:
    forged = httpx.get(
        f"{console_url}/",
        cookies={"conveyor_session": "eyJ1c2VyIjogImFsaWNlIn0="},
        follow_redirects=False,
    )
    assert forged.status_code == 303


@pytest.mark.parametrize("who", ["alice", "rita"])
def test_every_page_renders_for_both_roles(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str, who: str
) -> None:
    dead_id = dead_letter(sql, queue)
    job_id = enqueue(sql, queue)
    client = login(who)

    for path in [*PAGES, f"/jobs/{job_id}", f"/dead-letters/{dead_id}", f"/jobs?queue={queue}"]:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
    assert queue in client.get("/queues").text


def test_a_reader_sees_no_payload_on_any_page(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    dead_id = dead_letter(sql, queue)
    job_id = enqueue(sql, queue)
    reader, operator = login("rita"), login("alice")
    paths = [
        *PAGES,
        f"/jobs/{job_id}",
        f"/dead-letters/{dead_id}",
        f"/jobs?queue={queue}",
        f"/dead-letters?queue={queue}",
        f"/dead-letters/replay-set?queue={queue}",
    ]

    for path in paths:
        assert SECRET_MARKER not in reader.get(path).text, path
    # The marker is really there for someone who may see it.
    assert SECRET_MARKER in operator.get(f"/jobs/{job_id}").text
    assert SECRET_MARKER in operator.get(f"/dead-letters/{dead_id}").text


POSTS = [
    ("/queues/pause", {"queue": "x"}),
    ("/queues/resume", {"queue": "x"}),
    ("/dead-letters/replay", {"dead_letter_id": "1"}),
    ("/dead-letters/replay-set", {"queue": "x", "count": "1"}),
    ("/components/forget", {"component": "x"}),
    ("/jobs/cancel", {"job_id": "1"}),
    ("/workflows/cancel", {"workflow_id": "1"}),
    ("/workflows/complete-step", {"workflow_id": "1", "step": "approve"}),
    ("/approvals/approve", {"message_id": "1", "draft_sha256": "x"}),
    ("/approvals/reject", {"message_id": "1"}),
    ("/approvals/edit", {"message_id": "1", "text": "x"}),
    ("/logout", {}),
]


@pytest.mark.parametrize(("path", "form"), POSTS, ids=[p for p, _ in POSTS])
def test_a_post_without_the_csrf_token_is_refused(
    login: Callable[[str], httpx.Client], path: str, form: dict[str, str]
) -> None:
    client = login("alice")

    missing = client.post(path, data=form)
    wrong = client.post(path, data={**form, "csrf": "not-the-token"})

    assert missing.status_code == 403
    assert wrong.status_code == 403
    assert "CSRF" in missing.text
    assert client.get("/", follow_redirects=False).status_code == 200  # still logged in


def test_a_pause_without_the_csrf_token_changes_nothing(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    enqueue(sql, queue)
    client = login("alice")

    client.post("/queues/pause", data={"queue": queue})

    assert queue not in paused_queues(sql)


def test_a_reader_cannot_act(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    dead_id = dead_letter(sql, queue)
    reader = login("rita")
    token = reader.csrf  # type: ignore[attr-defined]

    pause = reader.post("/queues/pause", data={"csrf": token, "queue": queue})
    replay = reader.post("/dead-letters/replay", data={"csrf": token, "dead_letter_id": dead_id})

    assert pause.status_code == 403
    assert replay.status_code == 403
    assert "readers see, only operators act" in pause.text
    assert queue not in paused_queues(sql)
    assert scalar(sql, "SELECT resolved_at FROM job_dead_letter WHERE id = %s", (dead_id,)) is None
    assert "Pause" not in reader.get("/queues").text  # no button to press either


def test_an_operator_pauses_and_resumes_a_queue_recorded_with_their_name(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    enqueue(sql, queue)
    client = login("alice")
    token = client.csrf  # type: ignore[attr-defined]

    paused = client.post("/queues/pause", data={"csrf": token, "queue": queue})
    assert paused.status_code == 303
    assert queue in paused_queues(sql)
    by = scalar(sql, "SELECT updated_by FROM dot_config WHERE key = 'queue.paused_queues'")
    assert by == "alice"
    assert f"paused queue {queue}" in client.get("/queues").text

    client.post("/queues/resume", data={"csrf": token, "queue": queue})
    assert queue not in paused_queues(sql)


def test_replaying_a_filtered_set_confirms_the_count_and_replays_that_many(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    ids = [dead_letter(sql, queue, kind="test.set") for _ in range(3)]
    client = login("alice")

    confirm = client.get(f"/dead-letters/replay-set?queue={queue}&kind=test.set")
    assert "Replay 3 dead letters?" in confirm.text
    dead_letter(sql, queue, kind="test.set")  # one more arrives after the confirmation
    answer = client.post(
        "/dead-letters/replay-set",
        data={"csrf": csrf_of(confirm.text), "queue": queue, "kind": "test.set", "count": "3"},
    )

    assert answer.status_code == 303
    resolved = sql.execute(
        "SELECT id, resolved_by FROM job_dead_letter WHERE queue = %s AND resolved_at IS NOT NULL",
        (queue,),
    ).fetchall()
    assert sorted(r[0] for r in resolved) == sorted(ids)  # the three confirmed, oldest first
    assert {r[1] for r in resolved} == {"alice"}


def test_an_operator_forgets_a_component(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    name = f"gone-{queue}"
    sql.execute(
        "SELECT fn_heartbeat_register(component => %s, component_kind => 'worker',"
        " cadence_seconds => 5)",
        (name,),
    )
    client = login("alice")
    assert f'data-component="{name}"' in client.get("/components").text
    token = client.csrf  # type: ignore[attr-defined]

    client.post("/components/forget", data={"csrf": token, "component": name})

    assert scalar(
        sql, "SELECT deregistered_at IS NOT NULL FROM queue_heartbeat WHERE component = %s", (name,)
    )
    assert f'data-component="{name}"' not in client.get("/components").text


def test_jobs_are_paginated_by_key_and_filtered(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    ids = [enqueue(sql, queue) for _ in range(55)]
    client = login("rita")

    first = client.get(f"/jobs?queue={queue}").text
    assert f'href="/jobs/{ids[-1]}"' in first
    assert f'href="/jobs/{ids[4]}"' not in first
    older = client.get(f"/jobs?queue={queue}&before={ids[5]}").text
    assert f'href="/jobs/{ids[4]}"' in older
    assert f'href="/jobs/{ids[5]}"' not in older
    assert client.get("/jobs?state=nonsense").status_code == 400


def test_metrics_answer_a_token_or_a_session_in_prometheus_format(
    console_url: str,
    login: Callable[[str], httpx.Client],
    sql: psycopg.Connection[Any],
    queue: str,
) -> None:
    dead_letter(sql, queue)
    enqueue(sql, queue)
    enqueue(sql, queue)

    wrong = httpx.get(f"{console_url}/metrics", headers={"Authorization": "Bearer nope"})
    scraped = httpx.get(
        f"{console_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )

    assert wrong.status_code == 401
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert f'conveyor_jobs{{queue="{queue}",state="ready"}} 2.0' in text
    assert f'conveyor_dead_letters_open{{queue="{queue}"}} 1.0' in text
    assert "conveyor_jobs_by_state{" in text
    assert "conveyor_leader_term" in text or "conveyor_heartbeat_age_seconds" in text
    assert login("rita").get("/metrics").status_code == 200


def test_a_non_loopback_bind_without_tls_is_refused(tmp_path: Path) -> None:
    users_file = tmp_path / "users"
    users_file.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "web", "--host", "0.0.0.0", "--users", str(users_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "refusing to serve plain HTTP on 0.0.0.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_user_add_stores_a_hash_never_the_password(tmp_path: Path) -> None:
    users_file = tmp_path / "users"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor",
            "web",
            "user",
            "add",
            "bob",
            "--role",
            "reader",
            "--users",
            str(users_file),
            "--password-stdin",
        ],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    text = users_file.read_text()
    assert text.startswith("bob:reader:scrypt$")
    assert "correct horse" not in text
    assert users_file.stat().st_mode & 0o077 == 0


def test_database_text_is_escaped_never_run_as_markup(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    dead_id = dead_letter(sql, queue)
    sql.execute(
        "UPDATE job_dead_letter SET error = '<script>alert(1)</script>' WHERE id = %s", (dead_id,)
    )
    client = login("alice")

    for path in (f"/dead-letters?queue={queue}", f"/dead-letters/{dead_id}"):
        text = client.get(path).text
        assert "<script>alert(1)</script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_refused_action_comes_back_as_a_message_on_the_page(
    login: Callable[[str], httpx.Client],
) -> None:
    client = login("alice")
    token = client.csrf  # type: ignore[attr-defined]

    answer = client.post(
        "/dead-letters/replay",
        data={"csrf": token, "dead_letter_id": "999999999"},
        headers={"referer": f"{client.base_url}/dead-letters"},
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == "/dead-letters"
    page = client.get("/dead-letters").text
    assert "Not done: refused: not_found (dead_letter_id=999999999)" in page


def test_metrics_say_how_long_finished_jobs_waited_and_ran(
    console_url: str, sql: psycopg.Connection[Any], queue: str
) -> None:
    job_id = enqueue(sql, queue)
    claimed = scalar(sql, "SELECT fn_job_claim(worker => 'tests', queues => ARRAY[%s])", (queue,))
    (job,) = claimed["jobs"]
    sql.execute(
        "SELECT fn_job_complete(job_id => %s, lease_token => %s)", (job_id, job["lease_token"])
    )

    text = httpx.get(
        f"{console_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    ).text

    assert 'conveyor_job_wait_seconds{quantile="0.95"}' in text
    assert 'conveyor_job_run_seconds{quantile="0.5"}' in text
    finished = [line for line in text.splitlines() if line.startswith("conveyor_jobs_finished")]
    assert finished and float(finished[0].split()[-1]) >= 1


def test_a_missing_users_file_is_one_line_saying_how_to_create_a_user(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "web", "--users", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "does not exist: create a user with `conveyor web user add" in result.stderr
    assert "Traceback" not in result.stderr


def test_conveyor_metrics_serves_the_same_figures_on_its_own(
    web_dsn: str, sql: psycopg.Connection[Any], queue: str, tmp_path: Path
) -> None:
    dead_letter(sql, queue)
    port = free_port()
    log_path = tmp_path / "metrics.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "metrics", "--port", str(port)],
            env={**os.environ, "CONVEYOR_DATABASE_URL": web_dsn},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def scrape() -> str | None:
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.TransportError:
                return None

        text = wait_until(scrape, timeout=60)
        assert f'conveyor_dead_letters_open{{queue="{queue}"}} 1.0' in text
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0


def test_conveyor_metrics_refuses_plain_http_on_a_public_address() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "metrics", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "refusing to serve metrics over plain HTTP on 0.0.0.0" in result.stderr


def test_a_reader_is_not_offered_the_replay_confirmation(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    dead_letter(sql, queue)

    assert login("rita").get(f"/dead-letters/replay-set?queue={queue}").status_code == 403
    assert (
        "Replay 1 dead letter?"
        in login("alice").get(f"/dead-letters/replay-set?queue={queue}").text
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a cert")
def test_with_tls_a_public_address_is_served_over_https_with_a_secure_cookie(
    web_dsn: str, users_file: Path, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    log_path = tmp_path / "tls.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "web",
                "--host",
                "0.0.0.0",
                "--port",
                str(port),
                "--users",
                str(users_file),
                "--certfile",
                str(cert),
                "--keyfile",
                str(key),
            ],
            env={**os.environ, "CONVEYOR_DATABASE_URL": web_dsn},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def login_page() -> httpx.Response | None:
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"https://127.0.0.1:{port}/login", verify=False, timeout=5)
            except httpx.TransportError:
                return None

        answer = wait_until(login_page, timeout=60)
        assert answer.status_code == 200
        cookie = answer.headers["set-cookie"].lower()
        assert "secure" in cookie
        assert "samesite=strict" in cookie
        assert "httponly" in cookie
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_csrf_test_covers_every_post_route() -> None:
    from starlette.routing import Route

    from conveyor.web.app import routes

    posts = {r.path for r in routes() if isinstance(r, Route) and "POST" in (r.methods or set())}

    assert posts == {path for path, _ in POSTS} | {"/login"}


def test_login_without_the_csrf_token_is_refused(console_url: str) -> None:
    with httpx.Client(base_url=console_url) as client:
        client.get("/login")
        answer = client.post("/login", data={"username": "alice", "password": "alice-password"})

        assert answer.status_code == 403
        assert client.get("/", follow_redirects=False).status_code == 303


def test_an_operator_cancels_a_job_and_the_reason_names_them(
    login: Callable[[str], httpx.Client], sql: psycopg.Connection[Any], queue: str
) -> None:
    job_id = enqueue(sql, queue)
    client = login("alice")
    assert "Cancel job" in client.get(f"/jobs/{job_id}").text
    assert "Cancel job" not in login("rita").get(f"/jobs/{job_id}").text
    token = client.csrf  # type: ignore[attr-defined]

    answer = client.post("/jobs/cancel", data={"csrf": token, "job_id": job_id, "reason": "dup"})

    assert answer.status_code == 303
    status, reason = sql.execute(
        "SELECT status, cancel_reason FROM job_queue WHERE id = %s", (job_id,)
    ).fetchone() or (None, None)
    assert status == "cancelled"
    assert reason == "cancelled by alice in the console: dup"


@pytest.mark.parametrize("who", ["alice", "rita"])
def test_without_phase_6_the_workflows_link_is_absent_and_its_pages_say_what_to_run(
    login: Callable[[str], httpx.Client], who: str
) -> None:
    client = login(who)

    overview = client.get("/")
    listing = client.get("/workflows")
    detail = client.get("/workflows/1")

    assert 'href="/workflows"' not in overview.text
    for answer in (listing, detail):
        assert answer.status_code == 200
        assert "needs phase 6" in answer.text
        assert "conveyor phase apply 6" in answer.text


@pytest.mark.parametrize("who", ["alice", "rita"])
def test_without_phase_7_the_approvals_link_is_absent_and_its_pages_say_so(
    login: Callable[[str], httpx.Client], who: str
) -> None:
    client = login(who)

    overview = client.get("/")
    listing = client.get("/approvals")
    detail = client.get("/approvals/1")

    assert 'href="/approvals"' not in overview.text
    for answer in (listing, detail):
        assert answer.status_code == 200
        assert "phase 7 (customer messages) is not applied" in answer.text
        assert "conveyor phase apply 7" in answer.text
