"""Worker and orchestrator hosts that lose the network (network namespaces, root only): one
server (a cluster of the test's own, listening on the hosts' links), an effect table, and a link
cut mid-job. Zero lost, zero doubled; the cut-off worker carries on; leadership moves."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from helpers import prepare_worker_database, scalar, wait_until, worker_log
from scaleout.netns import Host, namespaces_work
from scaleout.replica import Cluster

DATABASE = "conveyor_netcut"
# Clients notice a dead link within seconds; the server drops a cut-off session's transaction.
CLIENT_TIMEOUTS = "keepalives_idle=1&keepalives_interval=1&keepalives_count=3&tcp_user_timeout=5000"
SERVER_TIMEOUTS = (
    "idle_in_transaction_session_timeout = '3s'\n"
    "tcp_keepalives_idle = 1\ntcp_keepalives_interval = 1\ntcp_keepalives_count = 3\n"
    "tcp_user_timeout = 5000\n"
)


@pytest.fixture(scope="module")
def network() -> Iterator[tuple[Cluster, list[Host]]]:
    reason = namespaces_work()
    if reason is not None:
        pytest.skip(reason)
    net = 200 + os.getpid() % 50
    hosts = [Host(net, index) for index in (1, 2)]
    base = Path(tempfile.mkdtemp(prefix="conveyor-netcut-", dir="/tmp"))
    base.chmod(0o755)  # the cluster runs as an unprivileged user under root
    server = Cluster(base / "server", "server")
    try:
        for host in hosts:
            host.create()
        server.initdb()
        server.allow(f"10.{net}.0.0/16", SERVER_TIMEOUTS)
        server.start(",".join(["127.0.0.1", *(h.server_address for h in hosts)]))
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        with psycopg.connect(server.url(DATABASE), autocommit=True) as conn:
            prepare_worker_database(conn, (0, 1, 2, 3, 4), "test_effect")
            conn.execute(
                "UPDATE conveyor.dot_config SET value = '5'"
                " WHERE key = 'queue.lease.default_seconds'"
            )
        yield server, hosts
    finally:
        for host in hosts:
            host.destroy()
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def url_from(host: Host, server: Cluster) -> str:
    return f"postgresql://postgres@{host.server_address}:{server.port}/{DATABASE}?{CLIENT_TIMEOUTS}"


def sql(server: Cluster) -> psycopg.Connection[Any]:
    return psycopg.connect(
        server.url(DATABASE), autocommit=True, options="-c search_path=conveyor,public"
    )


def enqueue(conn: psycopg.Connection[Any], queue: str, seqs: range, sleep: float) -> None:
    jobs = [
        {"kind": "test.effect", "queue": queue, "payload": {"seq": seq, "sleep": sleep}}
        for seq in seqs
    ]
    conn.execute("SELECT fn_job_enqueue_many(jobs => %s)", (Jsonb(jobs),))


def count(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> int:
    return int(scalar(conn, query, params))


def test_a_cut_off_worker_loses_its_jobs_to_another_host_and_carries_on_when_back(
    network: tuple[Cluster, list[Host]], tmp_path: Path
) -> None:
    server, (one, two) = network
    with sql(server) as conn:
        enqueue(conn, "shared", range(40), sleep=1.0)
        first = one.start(
            url_from(one, server), tmp_path / "w1.log",
            "worker", "--app", "workerapp:registry", "--name", "w1", "--concurrency", "4",
            "--queue", "shared", "--queue", "only-w1", "--poll-interval", "0.2",
        )  # fmt: skip
        two.start(
            url_from(two, server), tmp_path / "w2.log",
            "worker", "--app", "workerapp:registry", "--name", "w2", "--concurrency", "4",
            "--queue", "shared", "--poll-interval", "0.2",
        )  # fmt: skip
        orchestrator = Host.start_here(server.url(DATABASE), tmp_path / "orchestrator.log")
        try:
            wait_until(
                lambda: (
                    count(
                        conn,
                        "SELECT count(*) FROM job_queue WHERE leased_by = 'w1'"
                        " AND status = 'in_progress'",
                    )
                    >= 2
                ),
                timeout=60,
            )
            one.cut()
            cut_at = time.monotonic()
            stranded = [
                int(row[0])
                for row in conn.execute(
                    "SELECT id FROM job_queue WHERE leased_by = 'w1' AND status = 'in_progress'"
                ).fetchall()
            ]
            # reaped by the orchestrator, done by w2, all while w1 cannot reach the server
            wait_until(
                lambda: count(
                    conn, "SELECT count(*) FROM job_queue WHERE queue = 'shared'"
                    " AND status = 'succeeded'",
                ) == 40,
                timeout=180,
            )  # fmt: skip
            recovered = time.monotonic() - cut_at
            one.restore()
            enqueue(conn, "only-w1", range(100, 104), sleep=0.0)
            wait_until(
                lambda: count(
                    conn, "SELECT count(*) FROM job_queue WHERE queue = 'only-w1'"
                    " AND status = 'succeeded'",
                ) == 4,
                timeout=180,
            )  # fmt: skip
        finally:
            orchestrator.kill()
            orchestrator.wait(timeout=10)
        log = worker_log(first)
        alive = first.poll() is None
        one.kill_processes()
        two.kill_processes()
        effects = conn.execute(
            "SELECT count(*), count(DISTINCT e.job_id), count(DISTINCT e.seq)"
            " FROM public.test_effect AS e JOIN job_queue AS j ON j.id = e.job_id"
            " WHERE j.queue IN ('shared', 'only-w1')"
        ).fetchone()
    print(f"network cut: {len(stranded)} of w1's jobs done elsewhere, all {recovered:.1f} s after")
    assert stranded, "w1 held no job when its link was cut"
    assert effects == (44, 44, 44)  # every job's effect exactly once: none lost, none doubled
    assert alive, log[-3000:]  # w1 carried on
    assert "lease lost" in log or "could not record its outcome" in log, log[-3000:]


def leader(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute("SELECT holder FROM orchestrator_leader WHERE name = 'default'").fetchone()
    return str(row[0]) if row and row[0] else None


def test_cutting_the_leaders_host_moves_leadership_and_the_old_leader_stops_when_back(
    network: tuple[Cluster, list[Host]], tmp_path: Path
) -> None:
    server, hosts = network
    with sql(server) as conn:
        conn.execute("DELETE FROM orchestrator_leader")
        started = {}
        for index, host in enumerate(hosts, start=1):
            started[f"o{index}"] = host.start(
                url_from(host, server), tmp_path / f"o{index}.log",
                "orchestrator", "--name", f"o{index}", "--interval", "0.3",
                "--lease-seconds", "3",
            )  # fmt: skip
        first = wait_until(lambda: leader(conn), timeout=60)
        term = int(scalar(conn, "SELECT term FROM orchestrator_leader WHERE name = 'default'"))
        cut = hosts[int(first[1:]) - 1]
        other = next(name for name in started if name != first)

        cut.cut()
        cut_at = time.monotonic()
        try:
            wait_until(lambda: leader(conn) == other, timeout=60)
            print(f"leader cut: {other} leads {time.monotonic() - cut_at:.1f} s after the cut")
        finally:
            cut.restore()
        assert int(scalar(conn, "SELECT term FROM orchestrator_leader")) == term + 1

        old = started[first]
        try:
            wait_until(lambda: f"lost leadership to {other}" in worker_log(old), timeout=120)
            after = worker_log(old).split(f"lost leadership to {other}")[-1]
            assert "leads (term" not in after  # the old leader stops acting once it is back
            assert old.poll() is None, worker_log(old)[-3000:]
        finally:
            for host in hosts:
                host.kill_processes()
