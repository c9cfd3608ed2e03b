"""SendCommand with an instance that is not a valid managed instance: AWS rejects the whole request with InvalidInstanceId."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

SCAN = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Scan"]}}
AWS_MESSAGE = "Instances not in a valid state for account"


def _rejection(ssm, instance_ids):
    with pytest.raises(ClientError) as raised:
        ssm.send_command(InstanceIds=instance_ids, **SCAN)
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def test_one_terminated_instance_rejects_the_whole_chunk_with_aws_s_message(sandbox, ec2, ssm, launch_managed):
    healthy = launch_managed(49)
    gone = launch_managed(1)
    ec2.terminate_instances(InstanceIds=gone)
    assert _rejection(ssm, healthy[:24] + gone + healthy[24:]) == ("InvalidInstanceId", AWS_MESSAGE)
    assert ssm.list_commands()["Commands"] == [] and sandbox.state.command_log() == []


def test_unknown_and_unregistered_instances_are_invalid_too(ssm, launch, launch_managed):
    healthy = launch_managed(2)
    assert _rejection(ssm, healthy + ["i-0123456789abcdef0"]) == ("InvalidInstanceId", AWS_MESSAGE)
    assert _rejection(ssm, healthy + launch(1)) == ("InvalidInstanceId", AWS_MESSAGE)


def test_an_instance_of_another_region_is_invalid(sandbox, client, ssm, launch_managed):
    healthy = launch_managed(1)
    assert _rejection(client("ssm", region="eu-west-1"), healthy) == ("InvalidInstanceId", AWS_MESSAGE)


def test_a_registered_instance_whose_agent_lost_its_connection_is_accepted_and_delayed(sandbox, ec2, ssm, launch_managed):
    offline, stopped, healthy = launch_managed(3)
    sandbox.state.set_agent(offline, online=False)
    ec2.stop_instances(InstanceIds=[stopped])
    pings = {item["InstanceId"]: item["PingStatus"] for item in ssm.describe_instance_information()["InstanceInformationList"]}
    command_id = ssm.send_command(InstanceIds=[offline, stopped, healthy], **SCAN)["Command"]["CommandId"]
    sandbox.state.clock.advance(1.5)
    statuses = {item["InstanceId"]: item["Status"] for item in ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"]}
    assert (pings[offline], pings[stopped]) == ("ConnectionLost", "ConnectionLost")
    assert statuses == {offline: "Delayed", stopped: "Delayed", healthy: "InProgress"}
