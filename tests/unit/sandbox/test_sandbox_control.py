"""Throttling faults, the call counter, settings, faults and reset, through Python and the HTTP control API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from sandbox_testkit import OTHER_ROLE


def _http(sandbox, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{sandbox.endpoint}/_sandbox/{path}", data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_ec2_throttle_is_a_request_limit_exceeded_client_error(sandbox, ec2):
    sandbox.state.faults.add("throttle", operation="ec2:DescribeInstances")
    with pytest.raises(ClientError) as raised:
        ec2.describe_instances()
    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("RequestLimitExceeded", 503)


def test_ssm_throttle_is_a_throttling_exception_client_error(sandbox, ssm):
    sandbox.state.faults.add("throttle", operation="SendCommand")
    with pytest.raises(ClientError) as raised:
        ssm.send_command(InstanceIds=["i-0123456789abcdef0"], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]})
    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ThrottlingException", 400)


def test_throttle_every_nth_call(sandbox, ec2):
    sandbox.state.faults.add("throttle", operation="DescribeImages", every=3)
    outcomes = []
    for _attempt in range(6):
        try:
            ec2.describe_images(Owners=["self"])
            outcomes.append("ok")
        except ClientError:
            outcomes.append("throttled")
    assert outcomes == ["ok", "ok", "throttled", "ok", "ok", "throttled"]


def test_throttle_count_limits_how_many_calls_are_throttled(sandbox, ec2):
    sandbox.state.faults.add("throttle", operation="ec2:DescribeImages", count=2)
    failures = 0
    for _attempt in range(4):
        try:
            ec2.describe_images(Owners=["self"])
        except ClientError:
            failures += 1
    assert failures == 2


def test_throttle_rate_is_reproducible_with_its_seed(sandbox, ec2):
    def pattern():
        sandbox.state.faults.remove(kind="throttle")
        sandbox.state.faults.add("throttle", operation="ec2:DescribeImages", rate=0.5, seed=7)
        outcome = []
        for _attempt in range(12):
            try:
                ec2.describe_images(Owners=["self"])
                outcome.append(0)
            except ClientError:
                outcome.append(1)
        return outcome

    first = pattern()
    assert first == pattern() and 0 < sum(first) < 12


def test_botocore_retries_a_throttled_call_and_succeeds(sandbox, client):
    from botocore.config import Config  # pylint: disable=import-outside-toplevel

    sandbox.state.faults.add("throttle", operation="ec2:DescribeInstances", count=1)
    import boto3  # pylint: disable=import-outside-toplevel

    ec2 = boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=sandbox.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )
    ec2.describe_instances()
    assert sandbox.state.calls.snapshot()["throttled"] == {"ec2:DescribeInstances": 1}


def test_call_counter_counts_per_operation_account_and_region(sandbox, client):
    client("ec2").describe_instances()
    client("ec2", region="eu-west-1").describe_instances()
    credentials = client("sts").assume_role(RoleArn=OTHER_ROLE, RoleSessionName="test")["Credentials"]
    client(
        "ec2", aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"], aws_session_token=credentials["SessionToken"]
    ).describe_instances()
    calls = sandbox.state.calls.snapshot()
    assert calls["operations"] == {"ec2:DescribeInstances": 3, "sts:AssumeRole": 1}
    assert calls["by_account"]["210987654321"] == {"ec2:DescribeInstances": 1}
    assert calls["by_region"]["eu-west-1"] == {"ec2:DescribeInstances": 1}


def test_calls_endpoint_and_its_reset(sandbox, ec2):
    ec2.describe_instances()
    status, counted = _http(sandbox, "GET", "calls")
    _http(sandbox, "POST", "calls/reset")
    assert (status, counted["operations"], _http(sandbox, "GET", "calls")[1]["total"]) == (200, {"ec2:DescribeInstances": 1}, 0)


def test_settings_endpoint_changes_a_setting(sandbox):
    status, settings = _http(sandbox, "POST", "settings", {"ami_pending_seconds": 0.5})
    assert (status, settings["ami_pending_seconds"], sandbox.state.settings.ami_pending_seconds) == (200, 0.5, 0.5)


def test_unknown_setting_is_a_400(sandbox):
    status, body = _http(sandbox, "POST", "settings", {"warp": 9})
    assert status == 400 and "warp" in body["error"]


def test_faults_endpoint_adds_lists_and_deletes(sandbox, launch):
    (instance_id,) = launch(1)
    added = _http(sandbox, "POST", "faults", {"kind": "ami_fail", "instance_id": instance_id})[1]
    listed = _http(sandbox, "GET", "faults")[1]["faults"]
    removed = _http(sandbox, "DELETE", "faults")[1]
    assert (added["kind"], [fault["instance_id"] for fault in listed], removed, sandbox.state.faults.list()) == ("ami_fail", [instance_id], {"removed": 1}, [])


def test_fault_by_instance_name_resolves_to_its_id(sandbox, launch):
    (instance_id,) = launch(1, tags={"Name": "web-7"})
    assert _http(sandbox, "POST", "faults", {"kind": "patch_fail", "instance_name": "web-7"})[1]["instance_id"] == instance_id


def test_unknown_fault_kind_is_a_400(sandbox):
    status, body = _http(sandbox, "POST", "faults", {"kind": "meteor", "instance_id": "i-1"})
    assert status == 400 and "meteor" in body["error"]


def test_reset_endpoint_forgets_moto_and_sandbox_state(sandbox, ec2, launch_managed):
    launch_managed(1)
    sandbox.state.update_settings(invocation_seconds=9)
    _http(sandbox, "POST", "reset")
    assert (ec2.describe_instances()["Reservations"], sandbox.state.describe()["managed"], sandbox.state.settings.invocation_seconds) == ([], [], 2.0)


def test_describe_endpoint_dumps_managed_commands_images_and_faults(sandbox, ec2, ssm, launch_managed):
    (instance_id,) = launch_managed(1)
    sandbox.state.faults.add("status_impaired", instance_id=instance_id)
    ssm.send_command(InstanceIds=[instance_id], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]})
    ec2.create_image(InstanceId=instance_id, Name="d-1")
    described = _http(sandbox, "GET", "describe")[1]
    assert [entry["instance_id"] for entry in described["managed"]] == [instance_id]
    assert [command["invocations"] for command in described["commands"]] == [{instance_id: "Pending"}]
    assert [image["state"] for image in described["images"]] == ["pending"]
    assert [fault["kind"] for fault in described["faults"]] == ["status_impaired"]


def test_clock_advance_endpoint_moves_sandbox_time(sandbox):
    before = sandbox.state.now()
    assert _http(sandbox, "POST", "clock/advance", {"seconds": 60})[1]["now"] >= before + 60


def test_unknown_control_path_is_a_404(sandbox):
    assert _http(sandbox, "GET", "nope")[0] == 404


def test_the_running_sandbox_is_found_and_a_second_one_is_refused(sandbox):
    from sandbox import Sandbox  # pylint: disable=import-outside-toplevel

    assert Sandbox.running() is sandbox
    with pytest.raises(RuntimeError):
        Sandbox.start()
    assert Sandbox.running() is sandbox


def test_a_throttle_fault_on_star_matches_every_operation_and_on_service_star_only_that_service(sandbox):
    store = sandbox.state.fault_store
    sandbox.state.faults.add("throttle", operation="*", every=1)
    assert store.should_throttle("ec2:DescribeImages") and store.should_throttle("ssm:SendCommand")
    sandbox.state.faults.remove()
    sandbox.state.faults.add("throttle", operation="ssm:*", every=1)
    assert store.should_throttle("ssm:ListCommands")
    assert not store.should_throttle("ec2:CreateImage")
