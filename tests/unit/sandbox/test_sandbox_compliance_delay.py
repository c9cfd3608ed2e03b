"""Patch compliance reported a while after the invocation ends (setting ``compliance_delay_seconds``)."""

from __future__ import annotations

SCAN = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Scan"]}}
INSTALL = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Install"], "RebootOption": ["NoReboot"]}}
ONE_INVOCATION = 3.5  # delivery 1 s + invocation 2 s, and a little


def _states(ssm, instance_id):
    return ssm.describe_instance_patch_states(InstanceIds=[instance_id])["InstancePatchStates"]


def _ended(ssm, command_id, instance_id):
    return ssm.list_command_invocations(CommandId=command_id, InstanceId=instance_id)["CommandInvocations"][0]["Status"]


def test_without_a_delay_compliance_is_there_when_the_invocation_ends(sandbox, ssm, launch_managed):
    ids = launch_managed(1)
    ssm.send_command(InstanceIds=ids, **SCAN)
    sandbox.state.clock.advance(ONE_INVOCATION)
    assert [state["Operation"] for state in _states(ssm, ids[0])] == ["Scan"]


def test_a_never_scanned_instance_has_no_state_until_the_delay_has_passed(sandbox, ssm, launch_managed):
    sandbox.state.update_settings(compliance_delay_seconds=30)
    ids = launch_managed(1)
    command_id = ssm.send_command(InstanceIds=ids, **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_INVOCATION)
    assert (_ended(ssm, command_id, ids[0]), _states(ssm, ids[0])) == ("Success", [])
    assert ssm.describe_instance_patches(InstanceId=ids[0])["Patches"] == []
    sandbox.state.clock.advance(30)
    assert [state["Operation"] for state in _states(ssm, ids[0])] == ["Scan"]


def test_until_the_delay_has_passed_the_previous_operation_is_shown(sandbox, ssm, launch_managed):
    sandbox.state.update_settings(compliance_delay_seconds=30)
    ids = launch_managed(1)
    ssm.send_command(InstanceIds=ids, **SCAN)
    sandbox.state.clock.advance(ONE_INVOCATION + 30)
    scanned = _states(ssm, ids[0])[0]
    install_id = ssm.send_command(InstanceIds=ids, **INSTALL)["Command"]["CommandId"]
    sandbox.state.clock.advance(ONE_INVOCATION)
    stale = _states(ssm, ids[0])[0]
    sandbox.state.clock.advance(30)
    fresh = _states(ssm, ids[0])[0]

    assert _ended(ssm, install_id, ids[0]) == "Success"
    assert (stale["Operation"], stale["OperationEndTime"]) == ("Scan", scanned["OperationEndTime"])
    assert fresh["Operation"] == "Install" and fresh["OperationEndTime"] > scanned["OperationEndTime"]


def test_the_delay_does_not_change_what_the_next_install_finds_missing(sandbox, ssm, launch_managed):
    # The instance really is patched when the invocation ends; only the report lags.
    sandbox.state.update_settings(compliance_delay_seconds=300)
    ids = launch_managed(1)
    ssm.send_command(InstanceIds=ids, **INSTALL)
    sandbox.state.clock.advance(ONE_INVOCATION)
    ssm.send_command(InstanceIds=ids, **SCAN)
    sandbox.state.clock.advance(ONE_INVOCATION + 300)
    assert (_states(ssm, ids[0])[0]["Operation"], _states(ssm, ids[0])[0]["MissingCount"]) == ("Scan", 0)


def test_the_aws_profile_reports_compliance_a_minute_later(sandbox):
    sandbox.state.update_settings(realism="aws")
    assert sandbox.state.settings.compliance_delay_seconds == 60
