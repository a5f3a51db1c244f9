"""The console's short durations."""

from __future__ import annotations

import pytest

from conveyor.web.state import age


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "–"),
        (4.4, "4 s"),
        (303, "5 min 3 s"),
        (3 * 3600 + 12 * 60, "3 h 12 min"),
        (600015, "6 d 22 h"),
    ],
)
def test_age_is_short_and_names_its_units(seconds: float | None, text: str) -> None:
    assert age(seconds) == text
