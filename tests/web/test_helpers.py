"""Pure helpers of the console: short durations, the only redirects it follows, and where the
workflow graph puts each step."""

from __future__ import annotations

import pytest

from conveyor.web.pages.workflows import BOX_WIDTH, layout
from conveyor.web.sessions import safe_path
from conveyor.web.state import age
from conveyor.workflow import Step


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


def _step(key: str, ord: int, *parents: str) -> Step:
    return Step(
        1, key, ord, "demo", "dot", parents, "fail_workflow", ord, "waiting", None, 0,
        None, None, None, None,
    )  # fmt: skip


def test_the_graph_puts_each_step_one_layer_right_of_its_deepest_parent() -> None:
    steps = [_step("a", 0), _step("b", 1, "a"), _step("c", 2, "a"), _step("d", 3, "b", "c", "a")]

    drawing = layout(steps)

    x = {box.step.step_key: box.x for box in drawing.boxes}
    y = {box.step.step_key: box.y for box in drawing.boxes}
    assert x["b"] == x["c"] > x["a"]
    assert x["d"] > x["b"]
    assert y["b"] < y["c"]
    edges = {(parent.step.step_key, child.step.step_key) for parent, child in drawing.edges}
    assert edges == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "d")}
    assert drawing.width >= x["d"] + BOX_WIDTH
