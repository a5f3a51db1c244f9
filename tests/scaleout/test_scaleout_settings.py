"""The scale-out settings: the direct and read URLs, and CONVEYOR_PGBOUNCER's three values."""

from __future__ import annotations

import pytest

from conveyor.errors import ConfigError
from conveyor.settings import Settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), ("auto", None), ("1", True), ("yes", True), ("0", False), ("off", False)],
)
def test_conveyor_pgbouncer_reads_yes_no_or_auto(value: str, expected: bool | None) -> None:
    assert Settings.from_env({"CONVEYOR_PGBOUNCER": value}).pgbouncer is expected


def test_a_conveyor_pgbouncer_value_that_is_not_yes_no_or_auto_is_refused_naming_it() -> None:
    with pytest.raises(
        ConfigError, match=r"CONVEYOR_PGBOUNCER must be 1 \(yes\), 0 \(no\) or auto"
    ):
        Settings.from_env({"CONVEYOR_PGBOUNCER": "maybe"})


def test_the_direct_and_read_urls_come_from_their_own_variables() -> None:
    settings = Settings.from_env(
        {
            "CONVEYOR_DATABASE_URL": "postgresql://app@pooler:6432/app",
            "CONVEYOR_DIRECT_DATABASE_URL": "postgresql://app@db:5432/app",
            "CONVEYOR_READ_DATABASE_URL": "postgresql://app@replica:5432/app",
        }
    )
    assert settings.database_url == "postgresql://app@pooler:6432/app"
    assert settings.direct_url == "postgresql://app@db:5432/app"
    assert settings.read_url == "postgresql://app@replica:5432/app"
