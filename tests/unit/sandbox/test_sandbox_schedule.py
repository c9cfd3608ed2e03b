"""Run Command schedule and plugin output as pure functions of their inputs (no server)."""

from __future__ import annotations

import math

import pytest

from sandbox.clock import Settings
from sandbox.ssm.outputs import Streams
from sandbox.ssm.schedule import Outcome, Target, command_status, concurrency_limit, counts, error_allowance, simulate

SETTINGS = Settings(command_delivery_seconds=1, invocation_seconds=2, reboot_seconds=1, undeliverable_seconds=5)
OK = Outcome("Success", "Success", 0)
FAIL = Outcome("Failed", "Failed", 1)


def _run(outcomes, max_concurrency="50", max_errors="0", offline=(), cancel=None, timeout=3600):
    targets = [Target(f"i-{index:08x}", True, outcome) for index, outcome in enumerate(outcomes)]
    return simulate(
        targets,
        0.0,
        timeout,
        max_concurrency,
        max_errors,
        SETTINGS,
        lambda instance_id, when: instance_id in offline,
        lambda instance_id: cancel if cancel is not None else math.inf,
    )


@pytest.mark.parametrize("value,targets,expected", [("3", 10, 3), ("25%", 10, 2), ("10%", 5, 1), ("100%", 7, 7)])
def test_concurrency_limit(value, targets, expected):
    assert concurrency_limit(value, targets) == expected


@pytest.mark.parametrize("value,targets,expected", [("0", 10, 0), ("2", 10, 2), ("10%", 50, 5), ("10%", 5, 0)])
def test_error_allowance(value, targets, expected):
    assert error_allowance(value, targets) == expected


def test_one_at_a_time_runs_back_to_back():
    ends = [timeline.ended for timeline in _run([OK, OK, OK], max_concurrency="1")]
    assert ends == [3.0, 6.0, 9.0]


def test_a_reboot_adds_reboot_seconds():
    assert _run([Outcome("Success", "Success", 0, reboots=True)])[0].ended == 4.0


def test_the_error_after_the_allowance_terminates_the_rest_at_that_moment():
    timelines = _run([FAIL, FAIL, OK, OK], max_concurrency="1", max_errors="1")
    assert [(t.final.details, t.ended) for t in timelines] == [("Failed", 3.0), ("Failed", 6.0), ("Terminated", 6.0), ("Terminated", 6.0)]


def test_status_mid_run_and_final_counts():
    timelines = _run([OK, FAIL], max_errors="5")
    assert command_status(timelines, 0.5, "5", False) == ("Pending", "Pending")
    assert command_status(timelines, 1.5, "5", False) == ("InProgress", "InProgress")
    assert command_status(timelines, 3.0, "5", False) == ("Failed", "Incomplete")
    assert counts(timelines, 3.0) == {"TargetCount": 2, "CompletedCount": 2, "ErrorCount": 1, "DeliveryTimedOutCount": 0}


def test_max_errors_reached_fails_the_command():
    assert command_status(_run([OK, FAIL], max_errors="1"), 10, "1", False) == ("Failed", "Failed")


def test_offline_agent_holds_its_slot_until_undeliverable():
    timelines = _run([OK, OK], max_concurrency="1", offline={"i-00000000"})
    assert [(t.final.details, t.ended) for t in timelines] == [("Undeliverable", 5.0), ("Success", 8.0)]


def test_all_undeliverable_fails_the_command():
    timelines = _run([OK], offline={"i-00000000"})
    assert command_status(timelines, 10, "0", False) == ("Failed", "Failed")


def test_cancel_while_running_and_before_dispatch():
    timelines = _run([OK, OK], max_concurrency="1", cancel=2.0)
    assert [(t.final.details, t.ended) for t in timelines] == [("Cancelled", 2.0), ("Cancelled", 2.0)]
    assert command_status(timelines, 2.0, "0", True) == ("Cancelled", "Cancelled")


def test_no_targets_is_no_instances_in_tag():
    assert command_status([], 0, "0", False) == ("Failed", "NoInstancesInTag")


def test_plugin_output_is_cut_at_2500_characters_with_the_agent_marker():
    output = Streams("x" * 3000, "boom").plugin_output()
    assert len(output) == 2500 and output.endswith("---Output truncated---")


def test_short_plugin_output_keeps_stderr_after_the_error_separator():
    assert Streams("ok\n", "bad").plugin_output() == "ok\n\n----------ERROR-------\nbad"
