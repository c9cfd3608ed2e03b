"""A temporary key the sandbox never issued (before a reset, or by an earlier sandbox on the same port) is refused as AWS refuses
a key it does not know, instead of moto acting with it in its default account."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from sandbox_testkit import OTHER_ACCOUNT

ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/CmsPatchingRole"


def _assume(client):
    creds = client("sts").assume_role(RoleArn=ROLE, RoleSessionName="cms-patching")["Credentials"]
    return {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"], "aws_session_token": creds["SessionToken"]}


def _refusal(call, **kwargs):
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return raised.value.response["Error"]["Code"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_keys_issued_before_a_reset_are_unknown_to_every_service(sandbox, client):
    keys = _assume(client)
    assert client("sts", **keys).get_caller_identity()["Account"] == OTHER_ACCOUNT
    sandbox.reset()
    assert _refusal(client("ec2", **keys).describe_instances) == ("AuthFailure", 401)
    assert _refusal(client("ssm", **keys).list_commands) == ("UnrecognizedClientException", 400)
    assert _refusal(client("sts", **keys).get_caller_identity) == ("InvalidClientTokenId", 403)
    assert _refusal(client("s3", **keys).list_buckets) == ("InvalidAccessKeyId", 403)
    refused = [c for c in sandbox.state.calls.log() if c["injected"] == "unknown_credentials"]
    assert [c["operation"] for c in refused] == ["ec2:DescribeInstances", "ssm:ListCommands", "sts:GetCallerIdentity", "s3:ListBuckets"]


def test_issued_and_static_keys_are_accepted(client):
    keys = _assume(client)
    assert client("ec2", **keys).describe_instances()["Reservations"] == []
    assert client("ec2").describe_instances()["Reservations"] == []  # static test keys, never issued by STS
