"""A streaming standby and a failover, on two clusters of the test's own (the session's server is
never stopped): health reads from the standby and says how far behind it is; workers and an
orchestrator on a multi-host URL (target_session_attrs=read-write) follow a promotion, and every
job committed before the switch is done exactly once after it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from cli.running import conveyor
from helpers import conveyor_processes, prepare_worker_database, scalar, wait_until, worker_log
from scaleout.replica import Cluster, multi_host_url

DATABASE = "conveyor_failover"
JOBS = 400
Pair = tuple[Cluster, Cluster]
Starter = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Cluster, Cluster]]:
    """A primary with phases 0–4 in DATABASE and its synchronous streaming standby."""
    base = Path(tempfile.mkdtemp(prefix="conveyor-failover-", dir="/tmp"))
    base.chmod(0o755)  # the clusters run as an unprivileged user under root
    primary, standby = Cluster(base / "a", "a"), Cluster(base / "b", "b")
    try:
        primary.initdb()
        primary.start()
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        with psycopg.connect(primary.url(DATABASE), autocommit=True) as conn:
            prepare_worker_database(conn, (0, 1, 2, 3, 4), "test_effect")
            conn.execute(  # a lost lease comes back within seconds, not the default minute
                "UPDATE conveyor.dot_config SET value = '5'"
                " WHERE key = 'queue.lease.default_seconds'"
            )
        standby.basebackup(primary)
        standby.start()
        standby.make_synchronous(primary)
        yield primary, standby
    finally:
        standby.stop("immediate")
        primary.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def sql(cluster: Cluster) -> psycopg.Connection[Any]:
    return psycopg.connect(
        cluster.url(DATABASE), autocommit=True, options="-c search_path=conveyor,public"
    )


def succeeded(conn: psycopg.Connection[Any]) -> int:
    return int(scalar(conn, "SELECT count(*) FROM job_queue WHERE status = 'succeeded'"))


@pytest.fixture
def start_worker(pair: Pair, tmp_path: Path) -> Iterator[Starter]:
    """`conveyor -v worker --app workerapp:registry ARGS…` on the multi-host URL of both."""
    url = multi_host_url(list(pair), DATABASE)
    yield from conveyor_processes(url, tmp_path, ["worker", "--app", "workerapp:registry"])


@pytest.fixture
def start_orchestrator(pair: Pair, tmp_path: Path) -> Iterator[Starter]:
    """`conveyor -v orchestrator ARGS…` on the multi-host URL of both clusters."""
    yield from conveyor_processes(multi_host_url(list(pair), DATABASE), tmp_path, ["orchestrator"])


def test_health_reads_from_the_standby_and_says_how_old_its_last_replayed_transaction_is(
    pair: Pair,
) -> None:
    primary, standby = pair
    with sql(primary) as conn:
        conn.execute(
            "SELECT fn_heartbeat_register(component => 'lag-probe', component_kind => 'worker',"
            " cadence_seconds => 60)"
        )
        conn.execute("SELECT fn_heartbeat_beat(component => 'lag-probe')")
    with sql(standby) as replica:  # commits wait for the standby's flush, not for its replay
        wait_until(
            lambda: scalar(
                replica, "SELECT count(*) FROM queue_heartbeat WHERE component = 'lag-probe'"
            ),
            timeout=30,
        )

    result = conveyor(
        "health",
        url=primary.url(DATABASE),
        extra_env={"CONVEYOR_READ_DATABASE_URL": standby.url(DATABASE)},
    )

    assert "replica: reading from a standby, last replayed transaction" in result.stdout, (
        result.stdout + result.stderr
    )
    assert "lag-probe" in result.stdout  # the standby's copy of the heartbeat row
    with sql(primary) as conn:
        conn.execute("SELECT fn_heartbeat_deregister(component => 'lag-probe')")


def test_after_promote_and_stop_every_job_committed_before_the_switch_is_done_exactly_once(
    pair: Pair,
    start_worker: Starter,
    start_orchestrator: Starter,
) -> None:
    primary, standby = pair
    with sql(primary) as conn:
        jobs = [
            {"kind": "test.effect", "payload": {"seq": seq, "sleep": 0.02}} for seq in range(JOBS)
        ]
        conn.execute("SELECT fn_job_enqueue_many(jobs => %s)", (Jsonb(jobs),))
    worker = start_worker("--concurrency", "8", "--poll-interval", "0.1")
    orchestrator = start_orchestrator("--interval", "0.5")
    with sql(primary) as conn:
        wait_until(lambda: succeeded(conn) >= JOBS // 4, timeout=120)

    standby.promote()
    primary.stop("fast")
    switched = time.monotonic()

    with sql(standby) as conn:
        at_switch = succeeded(conn)
        wait_until(lambda: succeeded(conn) > at_switch, timeout=120)
        first_after = time.monotonic() - switched
        wait_until(lambda: succeeded(conn) == JOBS, timeout=300)
        effects = conn.execute(
            "SELECT count(*), count(DISTINCT job_id), count(DISTINCT seq) FROM public.test_effect"
        ).fetchone()
        unfinished = scalar(conn, "SELECT count(*) FROM job_queue WHERE status <> 'succeeded'")
    print(
        f"failover: {at_switch} done at the switch, first completion on the new primary "
        f"{first_after:.1f} s after it, all {JOBS} done {time.monotonic() - switched:.1f} s after"
    )
    assert effects == (JOBS, JOBS, JOBS)  # none lost, none doubled
    assert unfinished == 0
    assert worker.poll() is None, worker_log(worker)[-3000:]
    assert orchestrator.poll() is None, worker_log(orchestrator)[-3000:]
