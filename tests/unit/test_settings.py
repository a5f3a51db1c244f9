"""Where conveyor finds its database."""

from pathlib import Path

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
