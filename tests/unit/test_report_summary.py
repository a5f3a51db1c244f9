"""The report's per-phase summary counts objects by kind in plain English."""

from conveyor.phases.report import ReportObject, summary


def test_kinds_are_counted_and_pluralised_in_english() -> None:
    objects = [
        ReportObject("index", "conveyor.ix_a", None),
        ReportObject("index", "conveyor.ix_b", None),
        ReportObject("table", "conveyor.job_queue", 0),
        ReportObject("function", "conveyor.fn_a", None),
        ReportObject("function", "conveyor.fn_b", None),
    ]
    assert summary(objects) == "2 functions, 2 indexes, 1 table"
