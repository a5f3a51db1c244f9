"""Where conveyor finds its database."""

from pathlib import Path

import pytest

from conveyor.errors import ConfigError
from conveyor.settings import Settings, redact


def test_conveyor_database_url_wins_over_database_url() -> None:
    settings = Settings.from_env(
        {"CONVEYOR_DATABASE_URL": "postgresql://a/x", "DATABASE_URL": "postgresql://b/y"}
    )
    assert settings.database_url == "postgresql://a/x"


def test_database_url_is_used_when_conveyor_database_url_is_unset() -> None:
    assert (
        Settings.from_env({"DATABASE_URL": "postgresql://b/y"}).database_url == "postgresql://b/y"
    )


def test_no_url_means_the_embedded_server() -> None:
    settings = Settings.from_env({})
    assert settings.embedded
    assert settings.data_dir is None


def test_data_dir_comes_from_the_environment_unless_given() -> None:
    assert Settings.from_env({"CONVEYOR_DATA_DIR": "/x"}).data_dir == Path("/x")
    assert Settings.from_env({"CONVEYOR_DATA_DIR": "/x"}, data_dir=Path("/y")).data_dir == Path(
        "/y"
    )


def test_redact_hides_the_password() -> None:
    redacted = redact("postgresql://alice:s3cret-sentinel@db.example:5432/app")
    assert "s3cret-sentinel" not in redacted
    assert "alice" in redacted


def test_the_settings_name_the_variable_the_url_came_from() -> None:
    assert Settings.from_env({"DATABASE_URL": "postgresql://b/y"}).url_source == "DATABASE_URL"
    both = {"CONVEYOR_DATABASE_URL": "postgresql://a/x", "DATABASE_URL": "postgresql://b/y"}
    assert Settings.from_env(both).url_source == "CONVEYOR_DATABASE_URL"
    explicit = Settings.from_env(both, database_url="postgresql://c/z")
    assert (explicit.database_url, explicit.url_source) == ("postgresql://c/z", "--database-url")


@pytest.mark.parametrize(
    "url", ["postgresql://a/x", "postgres://me@h:5/db", "host=h dbname=app", " dbname=app"]
)
def test_urls_and_conninfo_strings_pass_the_check(url: str) -> None:
    assert Settings.from_env({"DATABASE_URL": url}).checked_url() == url


def test_a_url_without_a_scheme_is_refused_naming_its_variable() -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL is not a PostgreSQL URL \('h:5/app'\)"):
        Settings.from_env({"DATABASE_URL": "h:5/app"}).checked_url()


def test_a_refused_url_with_user_info_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"CONVEYOR_DATABASE_URL": "me:s3cret-sentinel@h/app"}).checked_url()
    assert "s3cret-sentinel" not in str(raised.value)
