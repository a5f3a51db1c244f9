"""The README's first hour, run as written (issue 10, item 4): its handler example, every command
of its walk-through, the worker started from the folder that holds `myapp/`, and `health`
explaining what is not fresh."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from cli.running import conveyor
from conveyor.phases import runner
from helpers import wait_until

README = Path(__file__).parents[2] / "README.md"
SCRIPT = Path(sys.executable).parent / "conveyor"  # the console script, as a user runs it


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _handler_example() -> str:
    match = re.search(r"```python\n(# myapp/jobs\.py\n.*?)```", _section("Your first hour"), re.S)
    assert match, "the first-hour section has a myapp/jobs.py example"
    return match.group(1)


def _commands() -> list[str]:
    """Every `conveyor …` command of the section's sh blocks, in order (comments dropped)."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", _section("Your first hour"), re.S):
        for line in block.splitlines():
            code = line.split("  #")[0].strip()
            commands += [part.strip() for part in code.split("&&") if part.strip()]
    assert all(c.startswith("conveyor ") for c in commands), commands
    return commands


def _run(command: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    env.update(CONVEYOR_DATABASE_URL=url, COLUMNS="200")
    argv = [str(SCRIPT), *shlex.split(command)[1:]]
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.skipif(not SCRIPT.exists(), reason="needs the installed `conveyor` script")
def test_the_readme_first_hour_runs_as_written(empty_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "jobs.py").write_text(_handler_example())
    outputs: dict[str, str] = {}
    for command in _commands():
        if command.startswith("conveyor worker"):
            _run_worker_until_both_jobs_are_done(command, empty_dsn, tmp_path)
            continue
        result = _run(command, empty_dsn, tmp_path)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        outputs[command.split(" --")[0].split(" -c")[0]] = result.stdout
    assert '{"greeting": "hello, ada"}' in outputs["conveyor db shell"]
    assert "the payload needs a name" in outputs["conveyor dlq list"]
    assert "→ job" in outputs["conveyor dlq replay"]
    assert "queue.job_substrate.enabled" in outputs["conveyor config list"]


def _both_jobs_done(url: str) -> bool:
    done = "SELECT count(*) FROM conveyor.job_queue WHERE status = 'succeeded'"
    dead = "SELECT count(*) FROM conveyor.v_job_queue_dead_letter_open"
    return _count(url, done) == 1 and _count(url, dead) == 1


def _run_worker_until_both_jobs_are_done(command: str, url: str, cwd: Path) -> None:
    # the script, not `python -m`: only the fix puts the current directory on the import path
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "PYTHONPATH"}}
    env["CONVEYOR_DATABASE_URL"] = url
    log = cwd / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [str(SCRIPT), *shlex.split(command)[1:]], env=env, cwd=cwd, stdout=out, stderr=out
        )
    try:
        wait_until(lambda: _both_jobs_done(url) or worker.poll() is not None, timeout=60)
        assert worker.poll() is None, log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=30)
    assert worker.returncode == 0, log.read_text()


def test_health_explains_a_stale_component_and_the_command_that_clears_it(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        for number in (0, 1, 2, 3):
            runner.ratify(conn, number, "tests")
            runner.apply(conn, number, "tests")
        conn.execute("SELECT conveyor.fn_iu_outbound_tick()")  # the outbound worker beats
        conn.execute(
            "SELECT conveyor.fn_heartbeat_register(component => 'w-crashed',"
            " component_kind => 'worker', cadence_seconds => 5)"
        )
        conn.execute("SELECT conveyor.fn_heartbeat_beat(component => 'w-crashed')")
        conn.execute(
            "UPDATE conveyor.queue_heartbeat SET last_beat_at = now() - interval '1 hour'"
            " WHERE component = 'w-crashed'"
        )
    result = conveyor("health", url=empty_dsn)
    assert result.returncode == 1
    assert "w-crashed (worker) is stale: no heartbeat for" in result.stderr
    fix = "`conveyor health --forget w-crashed`"
    assert fix in result.stderr
    assert "database: no long transaction" in result.stdout
    assert "None s" not in result.stdout

    cleared = conveyor(*fix.strip("`").split()[1:], url=empty_dsn)
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
