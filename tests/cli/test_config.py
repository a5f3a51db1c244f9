"""`conveyor config`, `conveyor db` and `conveyor --version`, run as a user would (issue 10,
item 1)."""

from __future__ import annotations

from importlib.metadata import version

import psycopg

from cli.running import conveyor


def _updated_by(url: str, key: str) -> tuple[object, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT dc.value, dc.updated_by FROM conveyor.dot_config AS dc WHERE dc.key = %s",
            (key,),
        ).fetchone()
    assert row is not None
    return row[0], str(row[1])


def test_config_list_shows_each_key_with_its_value_default_and_meaning(dsn: str) -> None:
    result = conveyor("config", "list", "queue.job_substrate", url=dsn)
    assert result.returncode == 0, result.stderr
    line = next(r for r in result.stdout.splitlines() if "queue.job_substrate.enabled" in r)
    assert "false" in line  # value and default
    assert "Master switch of the job substrate" in result.stdout  # the row's description
    assert "queue.lease.default_seconds" not in result.stdout  # only the prefix asked for


def test_config_list_reads_defaults_from_the_phases_data_files(empty_dsn: str) -> None:
    for number in ("0", "1", "2", "3", "4"):
        conveyor("phase", "ratify", number, "--by", "t", url=empty_dsn)
        assert conveyor("phase", "apply", number, url=empty_dsn).returncode == 0
    conveyor("config", "set", "queue.lease.default_seconds", "90", url=empty_dsn)
    result = conveyor("config", "list", url=empty_dsn)
    assert result.returncode == 0, result.stderr
    rows = {r.split("│")[1].strip(): r.split("│") for r in result.stdout.splitlines() if "│" in r}
    value, default = rows["queue.lease.default_seconds"][2:4]
    assert (value.strip(), default.strip()) == ("90", "60")
    # phase 4's data file switches the legacy path off: the default is the later phase's value
    assert rows["iu.auto_instantiate.legacy_enabled"][3].strip() == "false"
    assert rows["queue.dispatch.enabled"][3].strip() == "false"


def test_config_set_records_who_and_get_reads_it_back(dsn: str) -> None:
    result = conveyor("config", "set", "queue.retry.base_seconds", "7", "--by", "alice", url=dsn)
    assert result.returncode == 0, result.stderr
    assert "queue.retry.base_seconds: 1 → 7" in result.stdout
    assert _updated_by(dsn, "queue.retry.base_seconds") == (7, "alice")
    got = conveyor("config", "get", "queue.retry.base_seconds", url=dsn)
    assert (got.returncode, got.stdout.strip()) == (0, "7")


def test_config_set_takes_a_bare_word_as_a_json_string(dsn: str) -> None:
    result = conveyor("config", "set", "tests.policy.mode", "latest", url=dsn)
    assert result.returncode == 0, result.stderr
    assert "was not set before" in result.stderr  # a typo'd key does not pass unnoticed
    assert _updated_by(dsn, "tests.policy.mode")[0] == "latest"


def test_config_set_with_a_bad_key_or_value_says_what_is_wrong(dsn: str) -> None:
    bad_key = conveyor("config", "set", "nodots", "true", url=dsn)
    assert bad_key.returncode == 1
    assert "Error: fn_config_set: key 'nodots' is not a valid config key" in bad_key.stderr
    bad_value = conveyor("config", "set", "a.b", "{x", url=dsn)
    assert bad_value.returncode == 2
    assert "is not JSON" in bad_value.stderr
    for result in (bad_key, bad_value):
        assert "Traceback" not in result.stderr


def test_config_get_of_an_unset_key_exits_1(dsn: str) -> None:
    result = conveyor("config", "get", "no.such.key", url=dsn)
    assert result.returncode == 1
    assert "Error: no.such.key is not set" in result.stderr


def test_db_url_redacts_the_password_unless_asked() -> None:
    url = "postgresql://alice:s3cret-77@db.example:5432/app"
    shown = conveyor("db", "url", url=url)
    assert (shown.returncode, shown.stdout.strip()) == (
        0,
        "postgresql://alice:***@db.example:5432/app",
    )
    revealed = conveyor("db", "url", "--show-password", url=url)
    assert revealed.stdout.strip() == url


def test_db_shell_runs_psql_on_the_database_in_use(dsn: str) -> None:
    result = conveyor(
        "db", "shell", "-At", "-c", "SELECT fn_config_get('queue.payload.max_depth')", url=dsn
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "32"  # search_path includes conveyor


def test_db_shell_passes_psql_exit_code_through(dsn: str) -> None:
    result = conveyor("db", "shell", "-v", "ON_ERROR_STOP=1", "-c", "SELECT nope", url=dsn)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_version_prints_the_installed_version() -> None:
    result = conveyor("--version", url=None)
    assert (result.returncode, result.stdout.strip()) == (0, f"conveyor {version('conveyor')}")
