"""`conveyor queue limit|show` and `conveyor enqueue --concurrency-key`, run as a user types them:
limits set and merged with the stored ones, cleared, per key and for every key, shown, every
refusal in one line naming the option, and two first settings of a queue at once."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cli.running import conveyor
from helpers import apply_phases, scalar, set_flag, wait_until

Conn = psycopg.Connection[Any]


def limit(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = conveyor("queue", "limit", *args, url=url, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def queue_row(sql: Conn, queue: str) -> tuple[Any, ...] | None:
    return sql.execute(
        "SELECT l.max_in_progress, l.rate, l.per_seconds, l.key_max_in_progress"
        "  FROM job_queue_limit AS l WHERE l.queue = %s",
        (queue,),
    ).fetchone()


def key_row(sql: Conn, queue: str, key: str) -> tuple[Any, ...] | None:
    return sql.execute(
        "SELECT kl.max_in_progress, kl.rate, kl.per_seconds FROM job_key_limit AS kl"
        " WHERE kl.queue = %s AND kl.concurrency_key = %s",
        (queue, key),
    ).fetchone()


def test_limit_sets_a_queue_cap(limits_dsn: str, sql: Conn, queue: str) -> None:
    result = limit(limits_dsn, queue, "--max-in-progress", "5")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"queue {queue}: at most 5 in progress, no rate"
    assert queue_row(sql, queue) == (5, None, None, None)


def test_limit_sets_a_rate_per_seconds(limits_dsn: str, sql: Conn, queue: str) -> None:
    result = limit(limits_dsn, queue, "--rate", "100", "--per", "60")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"queue {queue}: no cap, 100 per 60 s"
    assert queue_row(sql, queue) == (None, 100, Decimal(60), None)


def test_a_rate_without_per_takes_the_databases_default_period(
    limits_dsn: str, sql: Conn, queue: str
) -> None:
    assert limit(limits_dsn, queue, "--rate", "7").returncode == 0
    assert queue_row(sql, queue) == (None, 7, Decimal(1), None)


def test_setting_the_rate_keeps_the_cap_and_setting_the_cap_keeps_the_rate(
    limits_dsn: str, sql: Conn, queue: str
) -> None:
    assert limit(limits_dsn, queue, "--max-in-progress", "3").returncode == 0
    assert limit(limits_dsn, queue, "--rate", "10", "--per", "2").returncode == 0
    assert queue_row(sql, queue) == (3, 10, Decimal(2), None)

    result = limit(limits_dsn, queue, "--max-in-progress", "4")

    assert result.stdout.strip() == f"queue {queue}: at most 4 in progress, 10 per 2 s"
    assert queue_row(sql, queue) == (4, 10, Decimal(2), None)


def test_a_rate_alone_keeps_the_stored_period_and_a_per_alone_the_stored_rate(
    limits_dsn: str, sql: Conn, queue: str
) -> None:
    assert limit(limits_dsn, queue, "--rate", "10", "--per", "60").returncode == 0
    assert limit(limits_dsn, queue, "--rate", "20").returncode == 0
    assert queue_row(sql, queue) == (None, 20, Decimal(60), None)

    assert limit(limits_dsn, queue, "--per", "0.5").returncode == 0
    assert queue_row(sql, queue) == (None, 20, Decimal("0.5"), None)


def test_no_options_clear_one_limit_and_keep_the_other(
    limits_dsn: str, sql: Conn, queue: str
) -> None:
    assert limit(limits_dsn, queue, "--max-in-progress", "3", "--rate", "9").returncode == 0

    assert limit(limits_dsn, queue, "--no-max-in-progress").returncode == 0
    assert queue_row(sql, queue) == (None, 9, Decimal(1), None)
    assert limit(limits_dsn, queue, "--max-in-progress", "2", "--no-rate").returncode == 0
    assert queue_row(sql, queue) == (2, None, None, None)


def test_clearing_the_last_limit_leaves_the_queue_unlimited(
    limits_dsn: str, sql: Conn, queue: str
) -> None:
    assert limit(limits_dsn, queue, "--max-in-progress", "3").returncode == 0

    result = limit(limits_dsn, queue, "--no-max-in-progress", "--no-rate")

    assert result.returncode == 0, result.stderr
    assert "no limits left; its claims take the unlimited path" in result.stdout
    assert queue_row(sql, queue) is None


def test_key_limits_merge_and_leave_the_queues_own_limits_alone(
    limits_dsn: str, sql: Conn, queue: str
) -> None:
    assert limit(limits_dsn, queue, "--max-in-progress", "10").returncode == 0
    assert limit(limits_dsn, queue, "--key", "tenant-1", "--max-in-progress", "1").returncode == 0

    result = limit(limits_dsn, queue, "--key", "tenant-1", "--rate", "5", "--per", "10")

    assert (
        result.stdout.strip() == f"queue {queue}, key tenant-1: at most 1 in progress, 5 per 10 s"
    )
    assert key_row(sql, queue, "tenant-1") == (1, 5, Decimal(10))
    assert queue_row(sql, queue) == (10, None, None, None)
    assert limit(limits_dsn, queue, "--key", "tenant-1", "--no-rate").returncode == 0
    assert key_row(sql, queue, "tenant-1") == (1, None, None)


def test_default_key_sets_the_cap_of_every_key_and_keeps_the_queue_cap(
    limits_dsn: str, sql: Conn, queue: str
) -> None:
    assert limit(limits_dsn, queue, "--max-in-progress", "10").returncode == 0

    result = limit(limits_dsn, queue, "--default-key", "--max-in-progress", "2")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"queue {queue}, every key without limits of its own: at most 2 in progress"
    )
    assert queue_row(sql, queue) == (10, None, None, 2)
    assert limit(limits_dsn, queue, "--rate", "3").returncode == 0
    assert queue_row(sql, queue) == (10, 3, Decimal(1), 2)


def test_show_lists_caps_jobs_in_progress_rates_and_backlog(
    limits_dsn: str, sql: Conn, queue: str
) -> None:
    for key in ("a", "a", "b"):
        enqueued = conveyor(
            "enqueue", "test.noop", "--queue", queue, "--concurrency-key", key, url=limits_dsn
        )
        assert enqueued.returncode == 0, enqueued.stderr
    assert limit(limits_dsn, queue, "--max-in-progress", "5", "--rate", "50").returncode == 0
    assert limit(limits_dsn, queue, "--key", "a", "--max-in-progress", "1").returncode == 0
    assert limit(limits_dsn, queue, "--default-key", "--max-in-progress", "2").returncode == 0
    claimed = scalar(
        sql, "SELECT fn_job_claim(worker => 'w', queues => ARRAY[%s], batch => 1)", (queue,)
    )
    assert len(claimed["jobs"]) == 1

    result = conveyor("queue", "show", queue, url=limits_dsn)

    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if queue in line]
    assert len(lines) == 3, result.stdout
    whole, each, key_a = (" ".join(line.replace("│", " ").split()) for line in lines)
    assert whole.startswith(f"{queue} (whole queue) 1 / 5 50 per 1 s")
    assert whole.endswith("0.1/s 2 ready")
    assert each == f"{queue} (each other key) — / 2"
    assert key_a.startswith(f"{queue} a ")
    assert " 0 / 1 — " in f" {key_a} " or " 1 / 1 — " in f" {key_a} "
    assert "queue.limits.enabled is false" not in result.stdout


def test_enqueue_with_a_concurrency_key_stores_it(limits_dsn: str, sql: Conn, queue: str) -> None:
    result = conveyor(
        "enqueue", "test.noop", "--queue", queue, "--concurrency-key", "acct-9", url=limits_dsn
    )

    assert result.returncode == 0, result.stderr
    job_id = int(result.stdout)
    assert scalar(sql, "SELECT concurrency_key FROM job_queue WHERE id = %s", (job_id,)) == "acct-9"


def test_show_without_limits_says_so(limits_dsn: str, queue: str) -> None:
    result = conveyor("queue", "show", queue, url=limits_dsn)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"queue {queue} has no limits; set one with `conveyor queue limit QUEUE "
        "--max-in-progress N` or `--rate N --per SECONDS`"
    )


def test_a_refusal_while_the_flag_is_off_names_the_flag_and_the_command(
    limits_dsn: str, sql: Conn, queue: str
) -> None:
    assert limit(limits_dsn, queue, "--max-in-progress", "3").returncode == 0
    set_flag(sql, "queue.limits.enabled", False)
    try:
        result = limit(limits_dsn, queue, "--rate", "5")
        shown = conveyor("queue", "show", queue, url=limits_dsn)
    finally:
        set_flag(sql, "queue.limits.enabled", True)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: refused: limits_disabled; the feature is switched off: switch it on with "
        "`conveyor config set queue.limits.enabled true`"
    )
    assert queue_row(sql, queue) == (3, None, None, None)
    assert "queue.limits.enabled is false: claims ignore these limits" in shown.stdout


def test_a_database_without_phase_8_says_to_apply_it(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        apply_phases(conn, (0, 1, 2, 3, 4))

    for argv in (("limit", "q", "--max-in-progress", "1"), ("show",)):
        result = conveyor("queue", *argv, url=empty_dsn, timeout=60)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"Error: `queue {argv[0]}` needs phase 8 (concurrency and rate limits), which is not "
            "applied: run `conveyor phase ratify 8 --by NAME` and `conveyor phase apply 8`"
        )


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["--max-in-progress", "0"],
            1,
            "Error: --max-in-progress is 0; it must be from 1 to 1000000 "
            "(--no-max-in-progress clears the cap)",
        ),
        (
            ["--rate", "-2"],
            1,
            "Error: --rate is -2; it must be from 1 to 1000000 (--no-rate clears the rate)",
        ),
        (
            ["--rate", "5", "--per", "0"],
            1,
            "Error: --per is 0; it must be from 0.001 to 31622400 (a year) "
            "(e.g. --rate 100 --per 1, or --rate 1000 --per 3600)",
        ),
        (
            ["--per", "60"],
            1,
            "Error: --per needs a --rate (give --rate N with --per S for N jobs per S seconds)",
        ),
        (
            ["--default-key", "--rate", "5"],
            1,
            "Error: a --rate needs a --key (name the key with --key; --default-key sets only "
            "--max-in-progress)",
        ),
        (
            ["--key", "", "--max-in-progress", "1"],
            1,
            "Error: --key must be 1 to 255 bytes (give the key jobs are enqueued with "
            "(`conveyor enqueue --concurrency-key`))",
        ),
        (["--max-in-progress", "many"], 2, "'--max-in-progress': 'many' is not a valid integer"),
        (["--rate", "99999999999"], 2, "'--rate': 99999999999 is out of range"),
        (["--per", "soon"], 2, "'--per': 'soon' is not a number of seconds"),
        (["--rate", "5", "--no-rate"], 2, "give --rate or --per or --no-rate, not both"),
        (
            ["--max-in-progress", "1", "--no-max-in-progress"],
            2,
            "give --max-in-progress or --no-max-in-progress, not both",
        ),
        (["--key", "k", "--default-key", "--max-in-progress", "1"], 2, "give --key or"),
        ([], 2, "give a limit to change: --max-in-progress N"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_bad_values_are_refused_in_one_line_naming_the_option(
    limits_dsn: str, sql: Conn, queue: str, argv: list[str], code: int, message: str
) -> None:
    result = limit(limits_dsn, queue, *argv)

    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for sql_word in ("max_in_progress", "per_seconds", "concurrency_key", "NULL", "fn_job"):
        assert sql_word not in result.stderr
    assert queue_row(sql, queue) is None


def test_a_bad_queue_name_is_named(limits_dsn: str) -> None:
    result = limit(limits_dsn, "Has Space", "--max-in-progress", "1")

    assert result.returncode == 1
    assert result.stderr.startswith("Error: queue 'Has Space' is not a queue name (")
    assert len(result.stderr.strip().splitlines()) == 1


def _start_limit(url: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    env["CONVEYOR_DATABASE_URL"] = url
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "queue", "limit", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_first_settings_of_a_queue_at_once_keep_both_limits(
    limits_dsn: str, sql: Conn, queue: str
) -> None:
    # Hold the queue's limit lock so both commands are surely in flight together, then let go.
    holder = psycopg.connect(limits_dsn)
    try:
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('conveyor.job_queue_limit ' || %s, 0))",
            (queue,),
        )
        cap = _start_limit(limits_dsn, queue, "--max-in-progress", "3")
        rate = _start_limit(limits_dsn, queue, "--rate", "50", "--per", "2")
        wait_until(
            lambda: (
                scalar(
                    sql,
                    "SELECT count(*) FROM pg_stat_activity AS a"
                    " WHERE a.datname = current_database() AND a.application_name = 'conveyor-cli'"
                    "   AND a.wait_event = 'advisory'",
                )
                == 2
            ),
            timeout=60,
        )
    finally:
        holder.rollback()
        holder.close()
    for process in (cap, rate):
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr

    assert queue_row(sql, queue) == (3, 50, Decimal(2), None)


DOC = Path(__file__).resolve().parents[2] / "docs" / "limits.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_examples_in_docs_limits_md_run_and_do_what_they_say(
    limits_dsn: str, sql: Conn
) -> None:
    commands = [
        shlex.split(line, comments=True)
        for block in _blocks("sh")
        for line in block.splitlines()
        if line.startswith("conveyor queue ")
    ]
    assert len(commands) >= 8
    for argv in commands:
        result = conveyor(*argv[1:], url=limits_dsn, timeout=60)
        assert result.returncode == 0, (argv, result.stderr)
    assert queue_row(sql, "email") == (5, None, None, 2)
    assert key_row(sql, "email", "tenant-42") is None
    assert "(each other key) — / 2" in " ".join(result.stdout.replace("│", " ").split())

    for block in _blocks("sql"):
        sql.execute(block.encode())
    assert queue_row(sql, "email") == (5, 50, Decimal(1), 2)
    assert key_row(sql, "email", "tenant-42") == (1, None, None)
