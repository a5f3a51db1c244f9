"""Pure helpers of the console: short durations, and the only redirects it follows."""

from __future__ import annotations

import pytest

from conveyor.web.sessions import safe_path
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


@pytest.mark.parametrize(
    ("value", "target"),
    [
        ("/jobs?queue=a", "/jobs?queue=a"),
        ("/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("/\t/evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("jobs", "/"),
        (None, "/"),
    ],
)
def test_redirects_stay_on_this_site(value: object, target: str) -> None:
    assert safe_path(value) == target
