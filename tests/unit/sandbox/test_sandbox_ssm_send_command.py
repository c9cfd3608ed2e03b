"""SendCommand targeting and validation, and the AWS documents it runs."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

PATCH = "AWS-RunPatchBaseline"
SCAN = {"DocumentName": PATCH, "Parameters": {"Operation": ["Scan"]}}


def _error(call, **kwargs):
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return raised.value.response["Error"]["Code"]


def test_command_targets_exactly_the_given_instance(ssm, launch_managed):
    ids = launch_managed(6)
    command = ssm.send_command(InstanceIds=[ids[2]], DocumentName=PATCH, Parameters={"Operation": ["Scan"]})["Command"]
    invocations = ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
    assert (command["TargetCount"], [invocation["InstanceId"] for invocation in invocations]) == (1, [ids[2]])


def test_targets_by_tag_match_only_managed_instances(ssm, launch, launch_managed):
    launch(2, tags={"Patch Group": "web"})
    managed = launch_managed(2, tags={"Patch Group": "web"})
    launch_managed(1, tags={"Patch Group": "db"})
    command = ssm.send_command(Targets=[{"Key": "tag:Patch Group", "Values": ["web"]}], DocumentName=PATCH, Parameters={"Operation": ["Scan"]})["Command"]
    invocations = ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
    assert sorted(invocation["InstanceId"] for invocation in invocations) == sorted(managed)


def test_the_response_echoes_the_request(ssm, launch_managed):
    ids = launch_managed(2)
    command = ssm.send_command(
        InstanceIds=ids,
        DocumentName=PATCH,
        Parameters={"Operation": ["Install"]},
        Comment="run-1",
        MaxConcurrency="1",
        MaxErrors="10%",
        TimeoutSeconds=600,
        OutputS3BucketName="logs",
        OutputS3KeyPrefix="patch/",
    )["Command"]
    assert {
        key: command[key]
        for key in (
            "Comment",
            "InstanceIds",
            "Parameters",
            "MaxConcurrency",
            "MaxErrors",
            "TimeoutSeconds",
            "OutputS3BucketName",
            "OutputS3KeyPrefix",
            "Status",
            "DocumentName",
        )
    } == {
        "Comment": "run-1",
        "InstanceIds": ids,
        "Parameters": {"Operation": ["Install"]},
        "MaxConcurrency": "1",
        "MaxErrors": "10%",
        "TimeoutSeconds": 600,
        "OutputS3BucketName": "logs",
        "OutputS3KeyPrefix": "patch/",
        "Status": "Pending",
        "DocumentName": PATCH,
    }


def test_unknown_document_is_invalid_document(ssm, launch_managed):
    assert _error(ssm.send_command, InstanceIds=launch_managed(1), DocumentName="AWS-NoSuchDocument") == "InvalidDocument"


def test_unknown_parameter_is_invalid_parameters(ssm, launch_managed):
    parameters = {"Operation": ["Scan"], "executionTimeout": ["60"]}
    assert _error(ssm.send_command, InstanceIds=launch_managed(1), DocumentName=PATCH, Parameters=parameters) == "InvalidParameters"


def test_missing_required_parameter_is_invalid_parameters(ssm, launch_managed):
    assert _error(ssm.send_command, InstanceIds=launch_managed(1), DocumentName=PATCH, Parameters={"RebootOption": ["NoReboot"]}) == "InvalidParameters"


def test_value_outside_allowed_values_is_invalid_parameters(ssm, launch_managed):
    assert _error(ssm.send_command, InstanceIds=launch_managed(1), DocumentName=PATCH, Parameters={"Operation": ["Upgrade"]}) == "InvalidParameters"


def test_value_not_matching_allowed_pattern_is_invalid_parameters(ssm, launch_managed):
    assert (
        _error(ssm.send_command, InstanceIds=launch_managed(1), DocumentName=PATCH, Parameters={"Operation": ["Install"], "SnapshotId": ["not-a-guid"]})
        == "InvalidParameters"
    )


def test_more_than_fifty_instance_ids_is_a_validation_error(ssm):
    ids = [f"i-{index:017x}" for index in range(51)]
    assert _error(ssm.send_command, InstanceIds=ids, DocumentName=PATCH, Parameters={"Operation": ["Scan"]}) == "ValidationException"


def test_instance_ids_and_targets_together_are_rejected(ssm, launch_managed):
    assert (
        _error(
            ssm.send_command, InstanceIds=launch_managed(1), Targets=[{"Key": "tag:a", "Values": ["b"]}], DocumentName=PATCH, Parameters={"Operation": ["Scan"]}
        )
        == "ValidationException"
    )


def test_neither_instance_ids_nor_targets_is_rejected(ssm):
    assert _error(ssm.send_command, DocumentName=PATCH, Parameters={"Operation": ["Scan"]}) == "ValidationException"


@pytest.mark.parametrize("field,value", [("MaxConcurrency", "abc"), ("MaxConcurrency", "0"), ("MaxErrors", "-1"), ("MaxErrors", "101%")])
def test_rate_controls_must_match_the_aws_pattern(ssm, launch_managed, field, value):
    assert _error(ssm.send_command, InstanceIds=launch_managed(1), **SCAN, **{field: value}) == "ValidationException"


def test_comment_longer_than_100_characters_is_rejected(ssm, launch_managed):
    assert _error(ssm.send_command, InstanceIds=launch_managed(1), **SCAN, Comment="x" * 101) == "ValidationException"


def test_timeout_seconds_above_thirty_days_is_rejected(ssm, launch_managed):
    assert (
        _error(ssm.send_command, InstanceIds=launch_managed(1), DocumentName=PATCH, Parameters={"Operation": ["Scan"]}, TimeoutSeconds=2592001)
        == "ValidationException"
    )


def test_an_unmanaged_instance_rejects_the_whole_call(ssm, launch, launch_managed):
    managed = launch_managed(1)
    unmanaged = launch(1)
    assert _error(ssm.send_command, InstanceIds=managed + unmanaged, DocumentName=PATCH, Parameters={"Operation": ["Scan"]}) == "InvalidInstanceId"
    assert ssm.list_commands()["Commands"] == []


def test_a_terminated_instance_is_an_invalid_instance_id(ec2, ssm, launch_managed):
    instance_ids = launch_managed(1)
    ec2.terminate_instances(InstanceIds=instance_ids)
    assert _error(ssm.send_command, InstanceIds=instance_ids, DocumentName=PATCH, Parameters={"Operation": ["Scan"]}) == "InvalidInstanceId"


def test_a_duplicated_instance_id_is_rejected(ssm, launch_managed):
    instance_ids = launch_managed(1)
    assert _error(ssm.send_command, InstanceIds=instance_ids * 2, DocumentName=PATCH, Parameters={"Operation": ["Scan"]}) == "DuplicateInstanceId"


def test_shell_script_on_windows_only_targets_is_unsupported(ssm, launch_managed):
    windows = launch_managed(1, image_id="ami-b7e93bce")
    assert _error(ssm.send_command, InstanceIds=windows, DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]}) == "UnsupportedPlatformType"


def test_run_patch_baseline_document_has_the_real_parameters(ssm):
    document = ssm.describe_document(Name=PATCH)["Document"]
    parameters = {parameter["Name"]: parameter.get("DefaultValue") for parameter in document["Parameters"]}
    assert parameters == {"Operation": None, "SnapshotId": "", "InstallOverrideList": "", "BaselineOverride": "", "RebootOption": "RebootIfNeeded"}
    assert (document["Owner"], document["DocumentType"]) == ("Amazon", "Command")


@pytest.mark.parametrize("name", ["AWS-RunShellScript", "AWS-RunPowerShellScript"])
def test_script_documents_take_commands_working_directory_and_execution_timeout(ssm, name):
    document = ssm.describe_document(Name=name)["Document"]
    assert sorted(parameter["Name"] for parameter in document["Parameters"]) == ["commands", "executionTimeout", "workingDirectory"]


def test_get_document_returns_the_content(ssm):
    content = ssm.get_document(Name=PATCH)["Content"]
    assert '"PatchLinux"' in content and '"allowedValues"' in content
