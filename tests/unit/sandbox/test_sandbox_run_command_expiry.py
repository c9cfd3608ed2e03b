"""Run Command as AWS times it (setting ``delayed_until_expiry``): unreachable targets stay Delayed until the command expires.

ExpiresAfter = send time + TimeoutSeconds + the document's execution timeout (AWS-RunPatchBaseline 7,200 s,
AWS-RunShellScript its executionTimeout parameter, 3,600 s by default).
"""

from __future__ import annotations

import datetime
import json
import urllib.request

import pytest

INSTALL = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Install"], "RebootOption": ["NoReboot"]}}
SHELL = {"DocumentName": "AWS-RunShellScript", "Parameters": {"commands": ["uptime"]}}


@pytest.fixture
def realistic(sandbox):
    sandbox.state.update_settings(delayed_until_expiry=True)
    return sandbox


def _invocation(ssm, command_id, instance_id):
    item = ssm.list_command_invocations(CommandId=command_id, InstanceId=instance_id)["CommandInvocations"][0]
    return item["Status"], item["StatusDetails"]


def _expires_after(command):
    return command["ExpiresAfter"].timestamp() - command["RequestedDateTime"].timestamp()


def test_without_the_setting_expires_after_is_the_delivery_timeout_and_offline_targets_give_up_early(sandbox, ssm, ec2, launch_managed):
    ids = launch_managed(1)
    ec2.stop_instances(InstanceIds=ids)
    command = ssm.send_command(InstanceIds=ids, TimeoutSeconds=600, **INSTALL)["Command"]
    sandbox.state.clock.advance(30)
    assert _expires_after(command) == pytest.approx(600, abs=0.01)
    assert _invocation(ssm, command["CommandId"], ids[0]) == ("Failed", "Undeliverable")


@pytest.mark.parametrize("document,timeout,expected", [
    (INSTALL, 600, 600 + 7200),
    (SHELL, None, 3600 + 3600),
    ({"DocumentName": "AWS-RunShellScript", "Parameters": {"commands": ["uptime"], "executionTimeout": ["120"]}}, 300, 300 + 120),
])
def test_expires_after_adds_the_document_s_execution_timeout(realistic, ssm, launch_managed, document, timeout, expected):
    ids = launch_managed(1)
    options = {"TimeoutSeconds": timeout} if timeout else {}
    command = ssm.send_command(InstanceIds=ids, **options, **document)["Command"]
    assert _expires_after(command) == pytest.approx(expected, abs=0.01)
    listed = ssm.list_commands(CommandId=command["CommandId"])["Commands"][0]
    assert listed["ExpiresAfter"] == command["ExpiresAfter"]


def test_a_stopped_instance_stays_delayed_until_the_command_expires(realistic, ssm, ec2, launch_managed):
    ids = launch_managed(2)
    ec2.stop_instances(InstanceIds=ids[1:])
    command_id = ssm.send_command(InstanceIds=ids, TimeoutSeconds=600, **INSTALL)["Command"]["CommandId"]
    realistic.state.clock.advance(600 + 7200 - 1)
    before = _invocation(ssm, command_id, ids[1]), ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"]
    realistic.state.clock.advance(2)
    command = ssm.list_commands(CommandId=command_id)["Commands"][0]

    assert before == (("Delayed", "Delayed"), "InProgress")
    assert _invocation(ssm, command_id, ids[0]) == ("Success", "Success")
    assert _invocation(ssm, command_id, ids[1]) == ("TimedOut", "DeliveryTimedOut")
    # A delivery timeout is not an error against MaxErrors, but the command is not a Success either.
    assert (command["Status"], command["StatusDetails"], command["ErrorCount"], command["DeliveryTimedOutCount"]) == ("TimedOut", "DeliveryTimedOut", 0, 1)


def test_an_offline_agent_that_comes_back_before_expiry_gets_the_command(realistic, ssm, launch_managed):
    ids = launch_managed(1)
    realistic.state.set_agent(ids[0], online=False)
    command_id = ssm.send_command(InstanceIds=ids, TimeoutSeconds=600, **INSTALL)["Command"]["CommandId"]
    realistic.state.clock.advance(3000)
    delayed = _invocation(ssm, command_id, ids[0])
    realistic.state.set_agent(ids[0], online=True)
    realistic.state.clock.advance(60)
    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=ids[0], PluginName="PatchLinux")

    assert delayed == ("Delayed", "Delayed")
    assert (invocation["Status"], invocation["ResponseCode"]) == ("Success", 0)
    started = datetime.datetime.fromisoformat(invocation["ExecutionStartDateTime"]).timestamp()
    requested = ssm.list_commands(CommandId=command_id)["Commands"][0]["RequestedDateTime"].timestamp()
    assert started - requested == pytest.approx(3000 + 1, abs=0.5)  # delivered when the agent came back (+ 1 s delivery)


def test_an_agent_that_never_comes_back_times_out_at_expiry_not_before(realistic, ssm, launch_managed):
    ids = launch_managed(1)
    realistic.state.set_agent(ids[0], online=False)
    command_id = ssm.send_command(InstanceIds=ids, TimeoutSeconds=30, **SHELL)["Command"]["CommandId"]
    realistic.state.clock.advance(30 + 3600 - 1)
    still = _invocation(ssm, command_id, ids[0])
    realistic.state.clock.advance(2)
    assert (still, _invocation(ssm, command_id, ids[0])) == (("Delayed", "Delayed"), ("TimedOut", "DeliveryTimedOut"))


def test_a_delayed_invocation_can_be_cancelled(realistic, ssm, launch_managed):
    ids = launch_managed(1)
    realistic.state.set_agent(ids[0], online=False)
    command_id = ssm.send_command(InstanceIds=ids, **SHELL)["Command"]["CommandId"]
    realistic.state.clock.advance(100)
    ssm.cancel_command(CommandId=command_id)
    realistic.state.clock.advance(1)
    assert _invocation(ssm, command_id, ids[0]) == ("Cancelled", "Cancelled")


def test_the_aws_profile_turns_it_on(sandbox):
    sandbox.state.update_settings(realism="aws")
    assert sandbox.state.settings.delayed_until_expiry is True


def test_the_profile_and_switches_through_the_control_api(sandbox):
    def post(body):
        request = urllib.request.Request(f"{sandbox.endpoint}/_sandbox/settings", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    aws = post({"realism": "aws", "compliance_delay_seconds": 5})
    assert (aws["realism"], aws["delayed_until_expiry"], aws["credentials_expire"], aws["realistic_output"], aws["compliance_delay_seconds"]) == (
        "aws", True, True, True, 5.0)
    fast = post({"realism": "fast", "realistic_output": "true"})
    assert (fast["delayed_until_expiry"], fast["realistic_output"], fast["invocation_seconds"]) == (False, True, 2.0)
