"""Answers become Python: ok answers pass, refusals become typed exceptions."""

import pytest

from conveyor.calls import answer_or_raise
from conveyor.errors import Disabled, LeaseLost, Refused


def test_an_ok_answer_is_returned_as_is() -> None:
    assert answer_or_raise({"ok": True, "job_id": 3}) == {"ok": True, "job_id": 3}


def test_lease_lost_becomes_lease_lost_with_its_context() -> None:
    with pytest.raises(LeaseLost, match="job_id=7") as caught:
        answer_or_raise({"refused": True, "reason": "lease_lost", "job_id": 7})
    assert caught.value.reason == "lease_lost"


def test_a_disabled_flag_says_the_cli_command_that_switches_it_on() -> None:
    with pytest.raises(Disabled, match=r"`conveyor config set queue\.job_substrate\.enabled true`"):
        answer_or_raise({"refused": True, "reason": "job_substrate_disabled"})


def test_the_flag_named_in_the_refusal_wins_over_the_fallback() -> None:
    with pytest.raises(Disabled, match=r"`conveyor config set pilot\.cut\.enabled true`") as caught:
        answer_or_raise({"refused": True, "reason": "cut_disabled", "flag": "pilot.cut.enabled"})
    assert caught.value.flag == "pilot.cut.enabled"


@pytest.mark.parametrize(
    ("reason", "flag"),
    [
        ("heartbeat_disabled", "queue.heartbeat.enabled"),
        ("dispatch_disabled", "queue.dispatch.enabled"),
    ],
)
def test_heartbeat_and_dispatch_refusals_name_their_flag(reason: str, flag: str) -> None:
    with pytest.raises(Disabled, match=f"`conveyor config set {flag} true`"):
        answer_or_raise({"refused": True, "reason": reason})


def test_an_unknown_disabled_reason_points_at_config_list() -> None:
    with pytest.raises(Disabled, match="conveyor config list") as caught:
        answer_or_raise({"refused": True, "reason": "something_disabled"})
    assert caught.value.flag is None


def test_other_refusals_are_refused_with_their_reason() -> None:
    with pytest.raises(Refused) as caught:
        answer_or_raise({"refused": True, "reason": "already_finished", "status": "succeeded"})
    assert type(caught.value) is Refused
    assert caught.value.reason == "already_finished"
