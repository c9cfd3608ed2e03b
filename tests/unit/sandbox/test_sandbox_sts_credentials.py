"""STS credentials that expire on the sandbox clock (setting ``credentials_expire``, ``credential_max_seconds``)."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from sandbox_testkit import OTHER_ACCOUNT, OWN_ACCOUNT

from sandbox.clock import Settings

ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/CmsPatchingRole"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": OWN_ACCOUNT}, "Action": "sts:AssumeRole"}]})


def _assume(client, role_arn=ROLE, **options):
    sts = client("sts", **options.pop("credentials", {}))
    answer = sts.assume_role(RoleArn=role_arn, RoleSessionName="cms-patching", **options)
    creds = answer["Credentials"]
    keys = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"], "aws_session_token": creds["SessionToken"]}
    return keys, creds["Expiration"].timestamp()


def _code(call, **kwargs):
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_without_the_setting_assumed_credentials_never_expire(sandbox, client):
    keys, _expiration = _assume(client)
    sandbox.state.clock.advance(48 * 3600)
    assert client("ec2", **keys).describe_instances()["Reservations"] == []


def test_expiration_is_an_hour_by_default_on_the_sandbox_clock(sandbox, client):
    sandbox.state.update_settings(credentials_expire=True)
    sandbox.state.clock.advance(86400)  # the sandbox clock, not the wall clock, decides
    _keys, expiration = _assume(client)
    assert expiration == pytest.approx(sandbox.state.now() + 3600, abs=2)


def test_expired_credentials_get_each_service_s_error(sandbox, client):
    sandbox.state.update_settings(credentials_expire=True)
    keys, expiration = _assume(client)
    assert client("ec2", **keys).describe_instances()["Reservations"] == []
    sandbox.state.clock.advance(expiration - sandbox.state.now() - 30)  # a margin for a loaded machine's wall seconds
    assert client("ssm", **keys).list_commands()["Commands"] == []
    sandbox.state.clock.advance(expiration - sandbox.state.now() + 1)

    assert _code(client("ec2", **keys).describe_instances) == ("RequestExpired", "Request has expired.", 400)
    assert _code(client("ssm", **keys).list_commands)[::2] == ("ExpiredTokenException", 400)
    assert _code(client("sts", **keys).get_caller_identity)[::2] == ("ExpiredToken", 400)
    assert _code(client("sts", **keys).assume_role, RoleArn=ROLE, RoleSessionName="again")[0] == "ExpiredToken"


def test_a_fresh_assume_role_works_again_after_expiry(sandbox, client):
    sandbox.state.update_settings(credentials_expire=True)
    old, _expiration = _assume(client)
    sandbox.state.clock.advance(3601)
    new, _expiration = _assume(client)
    assert client("ec2", **new).describe_instances()["Reservations"] == []
    assert _code(client("ec2", **old).describe_instances)[0] == "RequestExpired"


def test_duration_seconds_is_honoured(sandbox, client):
    sandbox.state.update_settings(credentials_expire=True)
    keys, expiration = _assume(client, DurationSeconds=900)
    assert expiration == pytest.approx(sandbox.state.now() + 900, abs=2)
    sandbox.state.clock.advance(901)
    assert _code(client("ec2", **keys).describe_instances)[0] == "RequestExpired"


def test_static_keys_never_expire(sandbox, client, ec2):
    sandbox.state.update_settings(credentials_expire=True, credential_max_seconds=900)
    _assume(client)
    sandbox.state.clock.advance(48 * 3600)
    assert ec2.describe_instances()["Reservations"] == []


def test_more_than_the_role_s_max_session_duration_is_refused(sandbox, client):
    sandbox.state.update_settings(credentials_expire=True)
    assert _code(client("sts").assume_role, RoleArn=ROLE, RoleSessionName="session", DurationSeconds=7200) == (
        "ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.", 400)


def test_a_role_allowing_longer_sessions_gets_them_but_not_through_role_chaining(sandbox, client):
    sandbox.state.update_settings(credentials_expire=True)
    long_role = client("iam").create_role(RoleName="LongSessions", AssumeRolePolicyDocument=TRUST, MaxSessionDuration=7200)["Role"]["Arn"]
    _keys, expiration = _assume(client, role_arn=long_role, DurationSeconds=7200)
    assert expiration == pytest.approx(sandbox.state.now() + 7200, abs=2)

    first, _expiration = _assume(client, role_arn=long_role)
    chained_sts = client("sts", **first)
    assert _code(chained_sts.assume_role, RoleArn=long_role, RoleSessionName="chained", DurationSeconds=7200) == (
        "ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.", 400)
    _keys, expiration = _assume(client, role_arn=long_role, credentials=first, DurationSeconds=3600)
    assert expiration == pytest.approx(sandbox.state.now() + 3600, abs=2)


def test_credential_max_seconds_caps_every_lifetime(sandbox, client):
    sandbox.state.update_settings(credential_max_seconds=900)
    keys, expiration = _assume(client)
    assert expiration == pytest.approx(sandbox.state.now() + 900, abs=2)
    # 30 s short of the expiry, not 1: the clock also runs with the wall, and a loaded machine once spent over a second
    # between the advance and the call (failed make unit at 22:50).
    sandbox.state.clock.advance(expiration - sandbox.state.now() - 30)
    assert client("ec2", **keys).describe_instances()["Reservations"] == []
    sandbox.state.clock.advance(expiration - sandbox.state.now() + 1)
    assert _code(client("ec2", **keys).describe_instances)[0] == "RequestExpired"


def test_expiry_runs_on_the_scaled_clock(sandbox, client):
    sandbox.state.update_settings(credentials_expire=True, time_scale=3600.0)
    keys, _expiration = _assume(client, DurationSeconds=900)
    # 900 sandbox seconds are a quarter of a wall second at this scale; advance() stands in for the wait.
    sandbox.state.clock.advance(900)
    assert _code(client("ec2", **keys).describe_instances)[0] == "RequestExpired"


def test_the_aws_profile_turns_expiry_on_and_fast_leaves_it_off():
    assert Settings().updated({"realism": "aws"}).credentials_expire is True
    assert Settings().updated({"realism": "fast"}).credentials_expire is False
    assert Settings().credentials_expire is False


def test_an_expired_call_is_refused_before_throttling_and_still_counted(sandbox, client):
    sandbox.state.update_settings(credential_max_seconds=900)
    keys, _expiration = _assume(client)
    sandbox.state.clock.advance(901)
    sandbox.state.calls.reset()
    sandbox.state.faults.add("throttle", operation="ec2:DescribeInstances", count=1)
    assert _code(client("ec2", **keys).describe_instances)[0] == "RequestExpired"
    # The throttle fault was not used up by the refused call: the next one is throttled.
    assert _code(client("ec2").describe_instances)[0] == "RequestLimitExceeded"
    calls = sandbox.state.calls.snapshot()
    assert (calls["operations"]["ec2:DescribeInstances"], calls["throttled_total"]) == (2, 1)
