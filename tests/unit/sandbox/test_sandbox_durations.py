"""Realistic run and reboot durations drawn per instance (``invocation_max_seconds``, ``reboot_max_seconds``)."""

from __future__ import annotations

import datetime

import pytest

from sandbox.clock import Settings, drawn_seconds
from sandbox.ssm.patch_catalog import missing_count

SCAN = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Scan"]}}
INSTALL = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Install"], "RebootOption": ["RebootIfNeeded"]}}


def _elapsed(ssm, command_id, instance_id):
    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id, PluginName="PatchLinux")
    start, end = (datetime.datetime.fromisoformat(invocation[key]).timestamp() for key in ("ExecutionStartDateTime", "ExecutionEndDateTime"))
    return end - start


def test_drawn_seconds_stays_in_range_and_depends_only_on_the_instance():
    values = [drawn_seconds(180, 900, f"i-{index:017x}", "invocation") for index in range(200)]
    assert all(180 <= value <= 900 for value in values)
    assert max(values) - min(values) > 500  # spread over the range, not one value
    assert drawn_seconds(180, 900, "i-0123456789abcdef0", "invocation") == drawn_seconds(180, 900, "i-0123456789abcdef0", "invocation")
    assert drawn_seconds(2, 0, "i-0123456789abcdef0", "invocation") == 2


def test_without_a_maximum_every_invocation_takes_invocation_seconds(sandbox, ssm, launch_managed):
    ids = launch_managed(4)
    command_id = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(10)
    assert {round(_elapsed(ssm, command_id, instance_id), 3) for instance_id in ids} == {2.0}


def test_each_instance_runs_for_its_own_time_within_the_range_every_time(sandbox, ssm, launch_managed):
    sandbox.state.update_settings(invocation_seconds=180, invocation_max_seconds=900)
    ids = launch_managed(6)
    first = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(1000)
    second = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(1000)
    durations = [_elapsed(ssm, first, instance_id) for instance_id in ids]

    assert all(180 <= duration <= 900 for duration in durations)
    assert len({round(duration) for duration in durations}) > 1
    assert [_elapsed(ssm, second, instance_id) for instance_id in ids] == pytest.approx(durations, abs=0.01)


def test_a_reboot_adds_its_drawn_time(sandbox, ssm, launch_managed):
    sandbox.state.update_settings(invocation_seconds=180, invocation_max_seconds=900, reboot_seconds=60, reboot_max_seconds=180)
    ids = [instance_id for instance_id in launch_managed(12) if missing_count(instance_id) > 0][:3]
    assert len(ids) == 3
    command_id = ssm.send_command(InstanceIds=ids, **INSTALL)["Command"]["CommandId"]
    sandbox.state.clock.advance(2000)
    for instance_id in ids:
        expected = drawn_seconds(180, 900, instance_id, "invocation") + drawn_seconds(60, 180, instance_id, "reboot")
        assert _elapsed(ssm, command_id, instance_id) == pytest.approx(expected, abs=0.01)
    assert sorted(reboot["instance_id"] for reboot in sandbox.state.describe()["reboots"]) == sorted(ids)


def test_the_aws_profile_uses_three_to_fifteen_minute_runs_and_one_to_three_minute_reboots():
    aws = Settings().updated({"realism": "aws"})
    assert (aws.invocation_seconds, aws.invocation_max_seconds, aws.reboot_seconds, aws.reboot_max_seconds) == (180, 900, 60, 180)


def test_a_health_script_runs_for_seconds_while_patches_take_minutes():
    from sandbox.ssm.schedule import SCRIPT_SECONDS, Outcome, _delivered, Phase

    settings = Settings().updated({"invocation_seconds": 180, "invocation_max_seconds": 900})
    pending = Phase(0.0, "Pending", "Pending")
    script = _delivered(pending, Outcome("Success", "Success", 0, script=True), 0.0, 10_000.0, float("inf"), settings, "i-0123456789abcdef0")
    patch = _delivered(pending, Outcome("Success", "Success", 0), 0.0, 10_000.0, float("inf"), settings, "i-0123456789abcdef0")
    delivered = settings.command_delivery_seconds
    assert script.final.at - delivered == SCRIPT_SECONDS
    assert 180 <= patch.final.at - delivered <= 900
