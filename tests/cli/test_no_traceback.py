"""A user's mistake or an unreachable server prints one line saying what was wrong and what to do,
exits non-zero, and never shows a traceback (issue 10, item 2)."""

from __future__ import annotations

import uuid
from pathlib import Path

import click
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cli.running import UNREACHABLE, conveyor
from conveyor import jobs
from conveyor.cli.main import cli
from conveyor.phases import runner

HERE = Path(__file__).parent

# Values for required arguments and options, by parameter name (the rest get "1" or "x").
_VALUES = {"app": "conveyor.demo_app:registry", "key": "a.b", "value": "true", "outcome": "sent"}


def _leaf_commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found += _leaf_commands(command, path)
        else:
            found.append((path, command))
    return found


# Commands whose arguments are optional one by one but not all together.
_EXTRA: dict[tuple[str, ...], list[str]] = {
    ("dlq", "replay"): ["17"],
    ("up",): ["--pilot"],
    ("messages", "edit"): ["--text", "x"],
    ("queue", "limit"): ["--max-in-progress", "1"],
}


# A file argument's content where the command reads it before connecting.
_FILE_TEXT = {"steps_file": '[{"key": "only", "kind": "demo.echo"}]'}


def _argv(path: tuple[str, ...], command: click.Command, tmp: Path) -> list[str]:
    argv = [*path, *_EXTRA.get(path, [])]
    for param in command.params:
        if not param.required or param.name is None:
            continue
        if isinstance(param.type, click.Path):
            target = tmp / "archive.sql"
            target.write_text(_FILE_TEXT.get(param.name, "-- empty\n"))
            value = str(target)
        elif isinstance(param.type, click.types.IntParamType):
            value = "1"
        else:
            value = _VALUES.get(param.name, "x")
        if isinstance(param, click.Option):
            argv += [param.opts[0], value]
        else:
            argv.append(value)
    return argv


COMMANDS = _leaf_commands(cli)


def test_the_walk_reaches_every_command_group() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"worker", "up", "config set", "db shell", "dlq replay", "phase apply"} <= names
    assert {"queue limit", "queue show"} <= names


@pytest.mark.parametrize(
    ("path", "command"), [pytest.param(p, c, id=" ".join(p)) for p, c in COMMANDS]
)
def test_every_command_against_an_unreachable_server_says_so_in_one_line(
    path: tuple[str, ...], command: click.Command, tmp_path: Path
) -> None:
    result = conveyor(*_argv(path, command, tmp_path), url=UNREACHABLE, timeout=90)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "sentinel-pw" not in output
    if path == ("db", "url"):  # prints the URL, redacted, without connecting
        assert result.returncode == 0, output
        assert "u:***@127.0.0.1:1/x" in result.stdout
        return
    if path == ("web", "user", "add"):  # writes the console's users file, never connects
        assert result.returncode == 2, output
        assert "Invalid value for '--role': 'x' is not one of 'reader', 'operator'" in output
        return
    assert result.returncode == 1, output
    assert "Error: cannot connect to" in result.stderr
    assert "check CONVEYOR_DATABASE_URL" in result.stderr


@pytest.mark.parametrize("command", ["worker", "up"])
def test_worker_and_up_fail_fast_at_start_on_an_unreachable_server(command: str) -> None:
    result = conveyor(command, "--app", "conveyor.demo_app:registry", url=UNREACHABLE, timeout=60)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Error: cannot connect to" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_gives_up_after_bounded_quick_worker_failures(empty_dsn: str) -> None:
    _apply(empty_dsn, 0, 1, 2, 3)
    result = conveyor("up", "--app", "quitapp:registry", url=empty_dsn, cwd=HERE, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "worker 0 exited 5 times in a row" in result.stderr
    assert "gave up" in result.stderr
    assert result.stderr.count("restarting in") == 4  # backed off between restarts
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "url"),
    [("CONVEYOR_DATABASE_URL", "localhost:5432/app"), ("DATABASE_URL", "db.example:5432/app")],
)
def test_a_url_without_a_scheme_names_the_variable_it_came_from(variable: str, url: str) -> None:
    result = conveyor("phase", "status", url=url, env_name=variable, timeout=60)
    assert result.returncode == 1
    assert f"Error: {variable} is not a PostgreSQL URL ('{url}')" in result.stderr
    assert "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_url_names_database_url_when_that_is_the_one_used() -> None:
    result = conveyor("phase", "status", url=UNREACHABLE, env_name="DATABASE_URL", timeout=60)
    assert result.returncode == 1
    assert "check DATABASE_URL" in result.stderr


def test_an_unreachable_database_url_option_names_the_option() -> None:
    result = conveyor("--database-url", UNREACHABLE, "phase", "status", url=None, timeout=60)
    assert result.returncode == 1
    assert "check --database-url" in result.stderr


@pytest.mark.parametrize(
    ("argv", "command", "phase"),
    [
        (("enqueue", "demo.echo"), "enqueue", 1),
        (("dlq", "list"), "dlq list", 1),
        (("dlq", "replay", "17"), "dlq replay", 2),
        (("health",), "health", 3),
        (("tick",), "tick", 0),
        (("orchestrator",), "orchestrator", 3),
        (("up", "--app", "conveyor.demo_app:registry"), "up", 2),
        (("config", "list"), "config list", 0),
        (("config", "get", "a.b"), "config get", 0),
        (("config", "set", "a.b", "true"), "config set", 0),
        (("outbound", "--once"), "outbound", 0),
        (("queue", "limit", "q", "--rate", "1"), "queue limit", 8),
        (("queue", "show"), "queue show", 8),
        (("enqueue", "demo.echo", "--concurrency-key", "k"), "enqueue", 8),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_command_needing_a_phase_says_which_and_how_to_apply_it(
    empty_dsn: str, argv: tuple[str, ...], command: str, phase: int
) -> None:
    result = conveyor(*argv, url=empty_dsn, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Error: `{command}` needs phase {phase} " in result.stderr
    assert "`conveyor phase apply 0`" in result.stderr  # the first missing one on a new database
    assert "Traceback" not in result.stderr


def test_dlq_replay_on_a_database_without_phase_2_names_phase_2(empty_dsn: str) -> None:
    _apply(empty_dsn, 0, 1)
    result = conveyor("dlq", "replay", "17", url=empty_dsn, timeout=60)
    assert result.returncode == 1
    assert (
        "Error: `dlq replay` needs phase 2 (retry / lease / DLQ), which is not applied: run "
        "`conveyor phase ratify 2 --by NAME` and `conveyor phase apply 2`"
    ) in result.stderr


def _apply(url: str, *numbers: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for number in numbers:
            runner.ratify(conn, number, "tests")
            runner.apply(conn, number, "tests")


def test_worker_on_a_new_database_says_which_phase_to_apply(empty_dsn: str) -> None:
    result = conveyor("worker", "--app", "conveyor.demo_app:registry", url=empty_dsn, timeout=60)
    assert result.returncode == 1
    assert "`conveyor phase apply 0`" in result.stderr
    assert "Traceback" not in result.stderr


def test_error_text_is_printed_literally_not_as_markup(dsn: str) -> None:
    conveyor("config", "set", "queue.job_substrate.enabled", "true", url=dsn)
    result = conveyor("enqueue", "demo.echo", "--queue", "has space", url=dsn, timeout=60)
    assert result.returncode == 1
    assert "queue 'has space' does not match ^[a-z0-9][a-z0-9_.-]*$" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_hints_speak_cli_not_sql(empty_dsn: str) -> None:
    _apply(empty_dsn, 0, 1, 2)
    conveyor("config", "set", "queue.job_substrate.enabled", "true", url=empty_dsn)
    result = conveyor("dlq", "replay", "--kind", "x", "--by", "", url=empty_dsn, timeout=60)
    assert result.returncode == 1
    assert "leave the option out for the session user" in result.stderr
    assert "NULL" not in result.stderr


def test_replaying_a_dead_letter_that_does_not_exist_says_where_to_look(empty_dsn: str) -> None:
    _apply(empty_dsn, 0, 1, 2)
    conveyor("config", "set", "queue.job_substrate.enabled", "true", url=empty_dsn)
    result = conveyor("dlq", "replay", "17", url=empty_dsn, timeout=60)
    assert result.returncode == 1
    assert (
        "Error: there is no dead letter 17; `conveyor dlq list` shows the open ones"
        in result.stderr
    )


def test_a_disabled_substrate_says_the_config_command_and_that_command_works(
    empty_dsn: str,
) -> None:
    _apply(empty_dsn, 0, 1)
    refused = conveyor("enqueue", "demo.echo", url=empty_dsn, timeout=60)
    assert refused.returncode == 1
    hint = "`conveyor config set queue.job_substrate.enabled true`"
    assert hint in refused.stderr
    switched = conveyor(*hint.strip("`").split()[1:], url=empty_dsn, timeout=60)
    assert switched.returncode == 0, switched.stderr
    enqueued = conveyor("enqueue", "demo.echo", url=empty_dsn, timeout=60)
    assert enqueued.returncode == 0, enqueued.stderr
    assert enqueued.stdout.strip().isdigit()


def test_a_dead_letter_error_with_brackets_is_listed_literally(empty_dsn: str) -> None:
    _apply(empty_dsn, 0, 1, 2)
    error = "[bold]bad[/bold] input: expected [a-z]+"
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("SELECT conveyor.fn_config_set('queue.job_substrate.enabled', 'true')")
        jobs.enqueue(conn, "demo.echo", {}, queue="markup")
        (claimed,) = jobs.claim(conn, "t", queues=["markup"], batch=1, lease_seconds=30)
        jobs.fail_permanent(conn, claimed.job_id, claimed.lease_token, error)
    result = conveyor("dlq", "list", url=empty_dsn, timeout=60)
    assert result.returncode == 0, result.stderr
    assert error in result.stdout


def test_a_role_without_privileges_gets_one_line_not_a_traceback(empty_dsn: str) -> None:
    _apply(empty_dsn, 0, 1)
    role = f"nopriv_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{role}'")  # no trust: a password
        params = conninfo_to_dict(empty_dsn)
        params["user"] = role
        params["password"] = role
    try:
        result = conveyor("config", "list", url=make_conninfo("", **params), timeout=60)
        assert result.returncode == 1
        assert "Error: the database refused: permission denied" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        with psycopg.connect(empty_dsn, autocommit=True) as conn:
            conn.execute(f'DROP ROLE "{role}"')
