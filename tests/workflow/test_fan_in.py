"""Fan-in exactly once: a child with 2-50 parents whose jobs end at the same moment on different
connections (threads released by one barrier) is released once, only after all of them ended,
and with a failed or cancelled parent it follows the parents' policy; the workflow always ends.
Repeated 500 times with a seeded mix of sizes, outcomes and policies; and a cancel racing the
completion that would release ten children, 100 times: nothing is ever left to run.

A test-only trigger (this module's database only) logs every waiting → queued release with what
the releasing transaction saw of the child's parents, so "once" and "only after all" are read
from the releases themselves, not inferred from end states."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from helpers import scalar
from workflow.support import Leased, claim, complete, emit, states, status, step_job

Conn = psycopg.Connection[Any]
Template = Callable[..., str]

REPETITIONS = 500
MAX_PARENTS = 50

RUNNABLE = "SELECT count(*) FROM job_queue WHERE queue = %s AND status IN ('queued', 'in_progress')"

RELEASE_LOG = """
CREATE TABLE IF NOT EXISTS public.release_log (
    job_id            bigint  NOT NULL,
    parents           integer NOT NULL,
    parents_ended     integer NOT NULL,
    parents_succeeded integer NOT NULL
);
-- The release runs inside conveyor_admin's SECURITY DEFINER functions: let it write the log.
GRANT INSERT ON public.release_log TO conveyor_admin;
CREATE OR REPLACE FUNCTION public.log_release() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.release_log (job_id, parents, parents_ended, parents_succeeded)
    SELECT NEW.id, cardinality(st.parents),
           (SELECT count(*) FROM conveyor.job_workflow_step AS p
             WHERE p.workflow_id = st.workflow_id AND p.step_key = ANY (st.parents)
               AND p.outcome IS NOT NULL),
           (SELECT count(*) FROM conveyor.job_workflow_step AS p
             WHERE p.workflow_id = st.workflow_id AND p.step_key = ANY (st.parents)
               AND p.outcome = 'succeeded')
      FROM conveyor.job_workflow_step AS st
     WHERE st.job_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE OR REPLACE TRIGGER log_release AFTER UPDATE OF status ON conveyor.job_queue
    FOR EACH ROW WHEN (OLD.status = 'waiting' AND NEW.status = 'queued')
    EXECUTE FUNCTION public.log_release();
"""


@pytest.fixture(scope="module")
def logged(workflow_dsn: str) -> str:
    with psycopg.connect(workflow_dsn, autocommit=True) as conn:
        conn.execute(RELEASE_LOG)
    return workflow_dsn


@pytest.fixture
def parents_connections(logged: str) -> Iterator[list[Conn]]:
    conns = [
        psycopg.connect(logged, autocommit=True, options="-c search_path=conveyor,public")
        for _ in range(MAX_PARENTS)
    ]
    yield conns
    for conn in conns:
        conn.close()


def end_parent(conn: Conn, lease: Leased, how: str, barrier: threading.Barrier) -> None:
    barrier.wait(timeout=60)
    if how == "succeed":
        complete(conn, lease, {"job": lease.job_id})
    elif how == "fail":
        scalar(conn, "SELECT fn_job_fail_permanent(%s, %s)", (lease.job_id, lease.token))
    else:
        scalar(conn, "SELECT fn_job_cancel(%s)", (lease.job_id,))
        scalar(conn, "SELECT fn_job_cancel_ack(%s, %s)", (lease.job_id, lease.token))


def cancel_workflow(conn: Conn, workflow_id: int, barrier: threading.Barrier) -> None:
    barrier.wait(timeout=60)
    scalar(conn, "SELECT fn_job_workflow_cancel(%s)", (workflow_id,))


def releases(sql: Conn, job_id: int) -> list[tuple[int, int, int]]:
    rows = sql.execute(
        "SELECT parents, parents_ended, parents_succeeded FROM public.release_log"
        " WHERE job_id = %s",
        (job_id,),
    ).fetchall()
    return [(int(a), int(b), int(c)) for a, b, c in rows]


def test_a_child_of_2_to_50_parents_ending_concurrently_is_released_exactly_once(
    sql: Conn, template: Template, queue: str, parents_connections: list[Conn]
) -> None:
    rng = random.Random(13)
    names: dict[tuple[int, str], str] = {}
    seen: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=MAX_PARENTS) as pool:
        for _ in range(REPETITIONS):
            n = rng.randint(2, MAX_PARENTS)
            mode = rng.choice(["succeed"] * 6 + ["fail"] * 2 + ["cancel"] * 2)
            policy = rng.choice(["fail_workflow", "continue", "skip_dependents"])
            if (n, policy) not in names:
                parents = [{"key": f"p{i}", "on_failure": policy} for i in range(n)]
                keys = [p["key"] for p in parents]
                names[(n, policy)] = template([*parents, {"key": "join", "parents": keys}])
            workflow = emit(sql, names[(n, policy)])
            leases = claim(sql, queue)
            assert len(leases) == n
            victim = rng.randrange(n) if mode != "succeed" else -1
            barrier = threading.Barrier(n)
            futures = [
                pool.submit(
                    end_parent,
                    parents_connections[i],
                    lease,
                    mode if i == victim else "succeed",
                    barrier,
                )
                for i, lease in enumerate(leases)
            ]
            for future in futures:
                future.result(timeout=120)

            join = step_job(sql, workflow, "join")
            released = releases(sql, join)
            expect_release = mode == "succeed" or policy == "continue"
            case = f"n={n} mode={mode} policy={policy} workflow={workflow}"
            combination = f"{mode}/{policy if mode != 'succeed' else '-'}"
            seen[combination] = seen.get(combination, 0) + 1
            if expect_release:
                succeeded = n if mode == "succeed" else n - 1
                assert released == [(n, n, succeeded)], case
                assert states(sql, workflow)["join"] == "queued", case
                (child,) = claim(sql, queue)
                complete(sql, child)
                assert status(sql, workflow) == "succeeded", case
            else:
                assert released == [], case
                expected = (
                    ("waiting", "failed") if policy == "fail_workflow" else ("skipped", "succeeded")
                )
                assert (states(sql, workflow)["join"], status(sql, workflow)) == expected, case
            assert scalar(sql, RUNNABLE, (queue,)) == 0, case  # nothing of it is left to run

    assert len(seen) == 7, seen  # every outcome × policy combination was exercised


def test_a_cancel_racing_the_last_parent_never_leaves_a_step_to_run(
    sql: Conn, template: Template, queue: str, parents_connections: list[Conn]
) -> None:
    name = template([{"key": "root"}, *({"key": f"c{i}", "parents": ["root"]} for i in range(10))])
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(100):
            workflow = emit(sql, name)
            (root,) = claim(sql, queue)
            barrier = threading.Barrier(2)

            done = [
                pool.submit(end_parent, parents_connections[0], root, "succeed", barrier),
                pool.submit(cancel_workflow, parents_connections[1], workflow, barrier),
            ]
            for future in done:
                future.result(timeout=120)

            assert claim(sql, queue) == [], states(sql, workflow)
            assert set(states(sql, workflow).values()) == {"succeeded", "cancelled"}
            assert status(sql, workflow) == "cancelled"
            assert (
                scalar(sql, "SELECT steps_open FROM job_workflow WHERE id = %s", (workflow,)) == 0
            )
