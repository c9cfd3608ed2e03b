"""Server errors at a rate (before or after acting) and EC2's token-bucket throttling, through boto3."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from sandbox_testkit import OTHER_ROLE

from sandbox.buckets import TokenBuckets


def _error(call):
    with pytest.raises(ClientError) as raised:
        call()
    response = raised.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _images(ec2, name):
    return ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]


# --- server errors --------------------------------------------------------------------------------

def test_no_server_errors_by_default(sandbox, ec2):
    for _attempt in range(20):
        ec2.describe_instances()
    assert sandbox.state.calls.snapshot()["server_errors_total"] == 0


def test_every_service_answers_its_own_server_error(sandbox, ec2, ssm, client):
    sandbox.state.update_settings(server_error_rate=1)
    ec2_errors = {_error(ec2.describe_instances) for _attempt in range(20)}
    assert ec2_errors == {("InternalError", 500), ("Unavailable", 503)}
    assert _error(ssm.list_commands) == ("InternalServerError", 500)
    assert _error(client("sts").get_caller_identity) == ("ServiceUnavailable", 503)


def test_a_write_failed_before_acting_made_nothing(sandbox, ec2, launch):
    (instance_id,) = launch(1)
    sandbox.state.update_settings(server_error_rate=1, server_error_applied_ratio=0)
    assert _error(lambda: ec2.create_image(InstanceId=instance_id, Name="not-made", NoReboot=True))[1] >= 500
    sandbox.state.update_settings(server_error_rate=0)
    assert _images(ec2, "not-made") == []
    assert sandbox.state.calls.log()[-2]["injected"] == "server_error"


def test_a_write_failed_after_acting_took_effect(sandbox, ec2, launch):
    (instance_id,) = launch(1)
    sandbox.state.update_settings(server_error_rate=1, server_error_applied_ratio=1)
    assert _error(lambda: ec2.create_image(InstanceId=instance_id, Name="made-anyway", NoReboot=True))[1] >= 500
    sandbox.state.update_settings(server_error_rate=0)
    assert [image["Name"] for image in _images(ec2, "made-anyway")] == ["made-anyway"]
    entry = sandbox.state.calls.log()[-2]
    assert (entry["operation"], entry["write"], entry["status"] >= 500, entry["injected"]) == ("ec2:CreateImage", True, True, "server_error_after_apply")


def test_reads_never_count_as_applied(sandbox, ec2):
    sandbox.state.update_settings(server_error_rate=1, server_error_applied_ratio=1)
    for _attempt in range(5):
        _error(ec2.describe_instances)
    assert {entry["injected"] for entry in sandbox.state.calls.log()} == {"server_error"}


def test_server_errors_are_reproducible_with_the_seed(sandbox, ec2):
    def pattern():
        sandbox.state.update_settings(server_error_rate=0.5, server_error_seed=11)
        outcome = []
        for _attempt in range(16):
            try:
                ec2.describe_images(Owners=["self"])
                outcome.append(0)
            except ClientError:
                outcome.append(1)
        sandbox.state.update_settings(server_error_seed=0)
        return outcome

    first = pattern()
    assert first == pattern() and 0 < sum(first) < 16
    assert sandbox.state.calls.snapshot()["server_errors"]["ec2:DescribeImages"] == 2 * sum(first)


# --- token buckets --------------------------------------------------------------------------------

@pytest.fixture
def wall(sandbox, monkeypatch):
    """Freeze the buckets' wall clock (refill is on wall time): ``wall[0] += seconds`` moves it."""
    now = [1_000_000.0]
    monkeypatch.setattr(sandbox.state.buckets, "wall", lambda: now[0])
    return now


def test_buckets_are_off_by_default(sandbox, ec2, wall):
    sandbox.state.update_settings(throttle_bucket_scale=0.01)
    for _attempt in range(5):
        ec2.describe_images(Owners=["self"])


def test_an_empty_bucket_answers_request_limit_exceeded_until_it_refills(sandbox, ec2, wall):
    # Non-mutating actions: 100 tokens, 20 per second; scaled: 2 tokens, 0.4 per second.
    sandbox.state.update_settings(throttle_buckets=True, throttle_bucket_scale=0.02)
    ec2.describe_images(Owners=["self"])
    ec2.describe_images(Owners=["self"])
    assert _error(lambda: ec2.describe_images(Owners=["self"])) == ("RequestLimitExceeded", 503)
    wall[0] += 2.5
    ec2.describe_images(Owners=["self"])
    assert _error(lambda: ec2.describe_images(Owners=["self"]))[0] == "RequestLimitExceeded"
    assert sandbox.state.calls.snapshot()["throttled"] == {"ec2:DescribeImages": 2}


def test_buckets_are_per_action_account_and_region(sandbox, client, wall):
    sandbox.state.update_settings(throttle_buckets=True, throttle_bucket_scale=0.01)
    ec2 = client("ec2")
    ec2.describe_images(Owners=["self"])
    assert _error(lambda: ec2.describe_images(Owners=["self"]))[0] == "RequestLimitExceeded"
    ec2.describe_key_pairs()
    client("ec2", region="eu-west-1").describe_images(Owners=["self"])
    credentials = client("sts").assume_role(RoleArn=OTHER_ROLE, RoleSessionName="test")["Credentials"]
    client("ec2", aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
           aws_session_token=credentials["SessionToken"]).describe_images(Owners=["self"])


def test_unfiltered_unpaginated_describes_use_the_smaller_bucket(sandbox, ec2, wall):
    # Standard non-mutating: 100 -> 2 tokens; unfiltered and unpaginated: 50 -> 1 token.
    sandbox.state.update_settings(throttle_buckets=True, throttle_bucket_scale=0.02)
    ec2.describe_instances()
    assert _error(ec2.describe_instances)[0] == "RequestLimitExceeded"
    ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
    ec2.describe_instances(MaxResults=5)
    assert _error(lambda: ec2.describe_instances(MaxResults=5))[0] == "RequestLimitExceeded"


def test_a_throttled_write_is_not_carried_out(sandbox, ec2, launch, wall):
    (instance_id,) = launch(1)
    # Mutating actions: 50 tokens -> 1.
    sandbox.state.update_settings(throttle_buckets=True, throttle_bucket_scale=0.02)
    ec2.create_image(InstanceId=instance_id, Name="first", NoReboot=True)
    assert _error(lambda: ec2.create_image(InstanceId=instance_id, Name="second", NoReboot=True)) == ("RequestLimitExceeded", 503)
    sandbox.state.update_settings(throttle_buckets=False)
    assert (len(_images(ec2, "first")), _images(ec2, "second")) == (1, [])


def test_ssm_buckets_answer_throttling_exception(sandbox, ssm, wall):
    sandbox.state.update_settings(throttle_buckets=True, throttle_bucket_scale=0.01)
    ssm.list_commands()
    assert _error(ssm.list_commands) == ("ThrottlingException", 400)


def test_resource_bucket_counts_instances_and_takes_nothing_when_short():
    now = [0.0]
    buckets = TokenBuckets(wall=lambda: now[0])
    # RunInstances: request bucket 5 -> 1 token (0.02/s); resource bucket 1000 -> 10 instances (0.02/s).

    def admit(count):
        return buckets.admit("ec2", "RunInstances", "1", "r", {"MaxCount": str(count)}, 0.01)

    assert admit(8)
    now[0] += 50  # +1 request token, +1 instance token
    assert not admit(8)
    assert admit(3)


def test_scale_change_starts_fresh_buckets(sandbox, ec2, wall):
    sandbox.state.update_settings(throttle_buckets=True, throttle_bucket_scale=0.01)
    ec2.describe_images(Owners=["self"])
    assert _error(lambda: ec2.describe_images(Owners=["self"]))[0] == "RequestLimitExceeded"
    sandbox.state.update_settings(throttle_bucket_scale=1)
    for _attempt in range(5):
        ec2.describe_images(Owners=["self"])
