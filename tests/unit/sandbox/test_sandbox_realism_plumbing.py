"""Realism profiles and settings, the skewed/scaled sandbox clock in every HTTP Date, and the call log."""

from __future__ import annotations

import datetime
import email.utils
import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from sandbox import realism
from sandbox.clock import Clock, Settings


def _http(sandbox, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{sandbox.endpoint}/_sandbox/{path}", data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _date(response):
    return email.utils.parsedate_to_datetime(response["ResponseMetadata"]["HTTPHeaders"]["date"]).timestamp()


# --- profiles -------------------------------------------------------------------------------------

def test_the_default_settings_are_the_fast_profile():
    defaults = Settings().as_dict()
    assert {name: defaults[name] for name in realism.profile("fast")} == realism.profile("fast")
    assert defaults["realism"] == "fast"


def test_the_aws_profile_turns_every_realism_behaviour_on():
    settings = Settings().updated({"realism": "aws"})
    assert settings.realism == "aws"
    assert {name: getattr(settings, name) for name in realism.profile("aws")} == realism.profile("aws")
    assert settings.describe_visibility_seconds > 0 and settings.snapshot_id_delay_seconds > 0
    assert 0 < settings.server_error_rate < 1 and settings.throttle_buckets and settings.clock_skew_seconds != 0
    assert settings.snapshot_in_use_seconds > 0 and settings.ami_pending_max_seconds > settings.ami_pending_seconds


def test_explicit_settings_override_the_profile_whatever_their_order():
    settings = Settings().updated({"server_error_rate": 0, "realism": "aws", "clock_skew_seconds": 600})
    assert (settings.server_error_rate, settings.clock_skew_seconds, settings.throttle_buckets) == (0.0, 600.0, True)


def test_the_fast_profile_turns_realism_back_off():
    settings = Settings().updated({"realism": "aws"}).updated({"realism": "fast"})
    assert settings == Settings()


@pytest.mark.parametrize("changes", [
    {"realism": "azure"},
    {"server_error_rate": 1.5},
    {"throttle_buckets": "yes"},
    {"throttle_bucket_scale": 0},
    {"server_error_seed": 1.5},
    {"snapshot_in_use_seconds": -1},
])
def test_bad_realism_settings_are_refused(changes):
    with pytest.raises(ValueError):
        Settings().updated(changes)


def test_skew_may_be_negative():
    assert Settings().updated({"clock_skew_seconds": -600}).clock_skew_seconds == -600


def test_settings_endpoint_applies_a_profile_with_overrides(sandbox):
    status, settings = _http(sandbox, "POST", "settings", {"realism": "aws", "server_error_rate": 0, "throttle_bucket_scale": 0.5})
    assert status == 200
    assert (settings["realism"], settings["throttle_buckets"], settings["server_error_rate"], settings["throttle_bucket_scale"]) == ("aws", True, 0.0, 0.5)
    assert sandbox.state.settings.describe_visibility_seconds == realism.profile("aws")["describe_visibility_seconds"]


def test_reset_returns_to_the_start_settings(sandbox):
    sandbox.state.update_settings(realism="aws")
    sandbox.reset()
    assert sandbox.state.settings == Settings() and sandbox.state.clock.skew == 0


def test_draw_is_deterministic_per_resource_and_within_range():
    first = [realism.draw(f"ami-{n:08x}", 300, 1200) for n in range(50)]
    assert first == [realism.draw(f"ami-{n:08x}", 300, 1200) for n in range(50)]
    assert all(300 <= value <= 1200 for value in first) and len(set(first)) == 50
    assert realism.draw("ami-1", 3, 0) == 3


# --- clock skew and the Date header ---------------------------------------------------------------

def test_clock_skew_moves_sandbox_time_and_back():
    clock = Clock(wall=lambda: 1000.0)
    clock.set_skew(-600)
    assert clock.now() == 400.0
    clock.set_skew(300)
    assert clock.now() == 1300.0


def test_date_header_is_the_sandbox_clock_without_skew(sandbox, ec2):
    before = sandbox.state.clock.now()
    response = ec2.describe_instances()
    after = sandbox.state.clock.now()
    assert int(before) - 1 <= _date(response) <= after + 1


def test_date_header_runs_behind_the_controller_under_negative_skew(sandbox, ec2, ssm, client):
    sandbox.state.update_settings(clock_skew_seconds=-600)
    for response in (ec2.describe_instances(), ssm.list_commands(), client("sts").get_caller_identity()):
        assert abs(_date(response) - (time.time() - 600)) < 5
        assert abs(_date(response) - sandbox.state.clock.now()) < 5


def test_date_header_follows_skew_and_time_scale_together(sandbox, ec2):
    sandbox.state.update_settings(clock_skew_seconds=600, time_scale=100)
    before = sandbox.state.clock.now()
    response = ec2.describe_instances()
    after = sandbox.state.clock.now()
    assert int(before) - 1 <= _date(response) <= after + 1
    assert _date(response) > time.time() + 500


def test_date_header_of_an_injected_error_is_the_sandbox_clock_too(sandbox, ec2):
    sandbox.state.update_settings(clock_skew_seconds=-600)
    sandbox.state.faults.add("throttle", operation="ec2:DescribeInstances")
    with pytest.raises(ClientError) as raised:
        ec2.describe_instances()
    assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert abs(_date(raised.value.response) - (time.time() - 600)) < 5


def test_resource_timestamps_carry_the_skew(sandbox, ec2, launch):
    sandbox.state.update_settings(clock_skew_seconds=-600)
    (instance_id,) = launch(1)
    image_id = ec2.create_image(InstanceId=instance_id, Name="skewed", NoReboot=True)["ImageId"]
    created = ec2.describe_images(ImageIds=[image_id])["Images"][0]["CreationDate"]
    created_at = datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    assert abs(created_at - (time.time() - 600)) < 5


# --- the call log ---------------------------------------------------------------------------------

def test_call_log_records_every_call_with_times_operation_account_region_write_and_status(sandbox, ec2, launch, client):
    sandbox.state.update_settings(clock_skew_seconds=-600)
    started = time.time()
    (instance_id,) = launch(1)
    ec2.describe_instances(InstanceIds=[instance_id])
    with pytest.raises(ClientError):
        ec2.create_image(InstanceId="i-0123456789abcdef0", Name="missing")
    client("ssm", region="eu-west-1").list_commands()
    log = sandbox.state.calls.log()
    assert [(c["operation"], c["account"], c["region"], c["write"], c["status"]) for c in log] == [
        ("ec2:RunInstances", "123456789012", "us-east-1", True, 200),
        ("ec2:DescribeInstances", "123456789012", "us-east-1", False, 200),
        ("ec2:CreateImage", "123456789012", "us-east-1", True, 400),
        ("ssm:ListCommands", "123456789012", "eu-west-1", False, 200),
    ]
    assert all(started <= c["wall"] <= time.time() and abs(c["sandbox_time"] - (c["wall"] - 600)) < 5 for c in log)
    assert [c["injected"] for c in log] == [None] * 4


def test_call_log_keeps_throttled_calls_with_their_status(sandbox, ec2, ssm):
    sandbox.state.faults.add("throttle", operation="DescribeImages", count=1)
    sandbox.state.faults.add("throttle", operation="ListCommands", count=1)
    for call in (lambda: ec2.describe_images(Owners=["self"]), ssm.list_commands):
        with pytest.raises(ClientError):
            call()
    assert [(c["operation"], c["status"], c["injected"]) for c in sandbox.state.calls.log()] == [
        ("ec2:DescribeImages", 503, "throttled"), ("ssm:ListCommands", 400, "throttled")]
    assert sandbox.state.calls.snapshot()["throttled_total"] == 2


def test_call_log_endpoint_with_since(sandbox, ec2):
    ec2.describe_instances()
    middle = time.time()
    while time.time() == middle:
        time.sleep(0.001)
    ec2.describe_images(Owners=["self"])
    status, everything = _http(sandbox, "GET", "calls/log")
    later = _http(sandbox, "GET", f"calls/log?since={middle!r}")[1]
    assert status == 200
    assert [c["operation"] for c in everything["calls"]] == ["ec2:DescribeInstances", "ec2:DescribeImages"]
    assert [c["operation"] for c in later["calls"]] == ["ec2:DescribeImages"]


def test_call_log_is_bounded_and_reset_with_the_counters(sandbox):
    from sandbox.calls import CallCounter  # pylint: disable=import-outside-toplevel

    counter = CallCounter(log_capacity=3)
    for n in range(5):
        counter.record("ec2:DescribeImages", "1", "r", False, wall=float(n))
    assert ([c["wall"] for c in counter.log()], counter.snapshot()["total"]) == ([2.0, 3.0, 4.0], 5)
    counter.reset()
    assert counter.log() == []


def test_seeding_is_not_logged(sandbox):
    sandbox.seed("demo")
    assert sandbox.state.calls.log() == []


def test_reset_starts_the_clock_over_at_the_controllers_time_plus_the_start_skew(sandbox):
    sandbox.state.clock.advance(100_000)
    sandbox.reset()
    assert abs(sandbox.state.clock.now() - time.time()) < 5
