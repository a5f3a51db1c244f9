"""SQL is the API: the Node.js worker of examples/node-worker (pg, the SQL functions only) and a
Python `conveyor worker` share one queue; every job is done exactly once, the Node worker's
failures are retried and dead-lettered by the database, and both stop cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from helpers import conveyor_processes, prepare_worker_database, scalar, unique, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node-worker"
JOBS = 300  # the Node handler sleeps 20 ms a job: alone it would need 6 s, so both take part

HANDLERS = """
'use strict';
const { Fail } = require(%(worker)s);

module.exports = {
  'test.effect': async (job, tx) => {
    await new Promise((resolve) => setTimeout(resolve, job.payload.sleep_ms || 0));
    await tx.query('INSERT INTO public.test_effect (job_id, seq) VALUES ($1, $2)',
                   [job.job_id, job.payload.seq]);
    return { by: 'node' };
  },
  'node.echo': async (job) => ({ echoed: job.payload }),
  'node.flaky': async (job) => {
    if (job.attempts < 2) throw new Error('first attempt fails');
    throw new Fail('second attempt gives up');
  },
};
"""


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's npm dependencies, installed once from its package.json."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are missing: .ci/run installs them")
        pytest.skip("node and npm are not installed")
    target = tmp_path_factory.mktemp("node-worker")
    shutil.copy(EXAMPLE / "package.json", target / "package.json")
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--omit=dev"],
        cwd=target,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target / "node_modules"


@pytest.fixture(scope="module")
def worker_dsn(substrate_dsn: str) -> str:
    with psycopg.connect(substrate_dsn, autocommit=True) as conn:
        prepare_worker_database(conn, (2,), "test_effect")
    return substrate_dsn


def libpq_url(dsn: str) -> str:
    """*dsn* (keywords or URL) as a postgresql:// URL, the form node-postgres reads."""
    params = conninfo_to_dict(dsn)
    auth = quote(str(params.get("user", "")))
    if params.get("password"):
        auth += ":" + quote(str(params["password"]))
    host = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
    return f"postgresql://{auth}@{host}/{quote(str(params['dbname']))}"


@pytest.fixture
def start_python_worker(
    worker_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    yield from conveyor_processes(
        worker_dsn, tmp_path, ["worker", "--app", "workerapp:registry", "--poll-interval", "0.05"]
    )


@pytest.fixture
def node_worker(
    worker_dsn: str, node_modules: Path, tmp_path: Path
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    handlers = tmp_path / "handlers.js"
    handlers.write_text(HANDLERS % {"worker": json.dumps(str(EXAMPLE / "worker.js"))})

    def start(queue: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "CONVEYOR_DATABASE_URL": libpq_url(worker_dsn),
            "NODE_PATH": str(node_modules),
        }
        with (tmp_path / "node.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    "node",
                    str(EXAMPLE / "worker.js"),
                    "--handlers",
                    str(handlers),
                    "--queue",
                    queue,
                    "--poll-ms",
                    "50",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process.log_path = tmp_path / "node.log"  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_a_node_worker_and_a_python_worker_share_a_queue_and_do_each_job_once(
    worker_dsn: str,
    start_python_worker: Callable[..., subprocess.Popen[bytes]],
    node_worker: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    queue = unique("poly")
    node = node_worker(queue)
    python = start_python_worker("--queue", queue)
    node_log = Path(node.log_path)  # type: ignore[attr-defined]
    wait_until(lambda: "started:" in node_log.read_text(), timeout=60)
    wait_until(lambda: "started:" in Path(python.log_path).read_text(), timeout=60)  # type: ignore[attr-defined]

    with psycopg.connect(worker_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT conveyor.fn_job_enqueue_many(jobs => %s)",
            (
                Jsonb(
                    [
                        {
                            "kind": "test.effect",
                            "queue": queue,
                            "payload": {"seq": n, "sleep_ms": 20},
                        }
                        for n in range(JOBS)
                    ]
                    + [{"kind": "node.flaky", "queue": queue, "max_attempts": 5} for _ in range(3)]
                    + [{"kind": "node.echo", "queue": queue, "payload": {"n": n}} for n in range(3)]
                ),
            ),
        )

        def settled() -> bool:
            done = scalar(
                conn,
                "SELECT count(*) FROM conveyor.job_queue WHERE queue = %s AND status = 'succeeded'",
                (queue,),
            )
            dead = scalar(
                conn, "SELECT count(*) FROM conveyor.job_dead_letter WHERE queue = %s", (queue,)
            )
            return bool(done == JOBS + 3 and dead == 3)

        wait_until(settled, timeout=180, interval=0.2)
        effects = conn.execute(
            "SELECT count(*), count(DISTINCT e.job_id) FROM public.test_effect AS e"
            "  JOIN conveyor.job_queue AS jq ON jq.id = e.job_id WHERE jq.queue = %s",
            (queue,),
        ).fetchone()
        by_node, by_python = conn.execute(
            "SELECT count(*) FILTER (WHERE result ->> 'by' = 'node'),"
            "       count(*) FILTER (WHERE result IS NULL)"
            "  FROM conveyor.job_queue WHERE queue = %s AND kind = 'test.effect'",
            (queue,),
        ).fetchone() or (0, 0)
        echoes = conn.execute(
            "SELECT result FROM conveyor.job_queue"
            " WHERE queue = %s AND kind = 'node.echo' AND status = 'succeeded' ORDER BY id",
            (queue,),
        ).fetchall()
        dead_letters = conn.execute(
            "SELECT reason, attempts, error FROM conveyor.job_dead_letter WHERE queue = %s",
            (queue,),
        ).fetchall()

    node.send_signal(signal.SIGTERM)
    python.send_signal(signal.SIGTERM)
    assert node.wait(timeout=30) == 0, node_log.read_text()
    assert python.wait(timeout=60) == 0
    assert effects == (JOBS, JOBS)  # one effect per job: none lost, none twice
    # The Node handler is slow on purpose (20 ms a job), so the Python worker takes a share.
    assert by_python > 0 and by_node + by_python == JOBS, (by_node, by_python)
    assert echoes == [({"echoed": {"n": n}},) for n in range(3)]  # completed by Node, with results
    assert dead_letters == [("permanent_failure", 2, "Fail: second attempt gives up")] * 3
    assert "first attempt fails; queued" in node_log.read_text()
