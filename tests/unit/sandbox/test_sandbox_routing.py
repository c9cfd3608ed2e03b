"""One endpoint (AWS_ENDPOINT_URL) serves STS, EC2 and SSM; assumed roles land in their own account."""

from __future__ import annotations

import json
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError
from sandbox_testkit import OTHER_ACCOUNT, OWN_ACCOUNT
from sandbox_testkit import OTHER_ROLE as ROLE


@pytest.fixture
def env_only(sandbox, monkeypatch):
    """Configure boto3 exactly the way a user of ``python -m sandbox serve`` does: through the environment."""
    for name, value in sandbox.env("eu-west-1").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return sandbox


def test_sts_routes_through_the_endpoint_env_var(env_only):
    assert boto3.client("sts").get_caller_identity()["Account"] == OWN_ACCOUNT


def test_ec2_routes_through_the_endpoint_env_var(env_only):
    regions = boto3.client("ec2").describe_regions()["Regions"]
    assert "eu-west-1" in {region["RegionName"] for region in regions}


def test_ssm_routes_through_the_endpoint_env_var(env_only):
    document = boto3.client("ssm").describe_document(Name="AWS-RunPatchBaseline")["Document"]
    assert document["Owner"] == "Amazon"


def test_each_service_call_is_counted_under_its_own_service(env_only):
    boto3.client("sts").get_caller_identity()
    boto3.client("ec2").describe_instances()
    boto3.client("ssm").list_commands()
    assert env_only.state.calls.snapshot()["operations"] == {"ec2:DescribeInstances": 1, "ssm:ListCommands": 1, "sts:GetCallerIdentity": 1}


def _assume(client, external_id):
    options = {"ExternalId": external_id} if external_id else {}
    credentials = client("sts").assume_role(RoleArn=ROLE, RoleSessionName="test", **options)["Credentials"]
    return {
        "aws_access_key_id": credentials["AccessKeyId"],
        "aws_secret_access_key": credentials["SecretAccessKey"],
        "aws_session_token": credentials["SessionToken"],
    }


def test_assumed_role_credentials_act_in_the_role_account(client):
    credentials = _assume(client, None)
    assert client("sts", **credentials).get_caller_identity()["Account"] == OTHER_ACCOUNT


def test_instances_of_the_other_account_are_invisible_to_the_caller_account(client, launch):
    other_ec2 = client("ec2", **_assume(client, None))
    launch(2, ec2_client=other_ec2)
    assert client("ec2").describe_instances()["Reservations"] == []
    assert len(other_ec2.describe_instances()["Reservations"][0]["Instances"]) == 2


def test_registered_role_refuses_a_wrong_external_id(sandbox, client):
    sandbox.state.roles.register(ROLE, "cms-demo")
    with pytest.raises(ClientError) as raised:
        _assume(client, "wrong")
    assert raised.value.response["Error"]["Code"] == "AccessDenied"


def test_registered_role_accepts_its_external_id(sandbox, client):
    sandbox.state.roles.register(ROLE, "cms-demo")
    assert client("sts", **_assume(client, "cms-demo")).get_caller_identity()["Account"] == OTHER_ACCOUNT


def test_health_endpoint_answers_on_the_same_port(sandbox):
    with urllib.request.urlopen(f"{sandbox.endpoint}/_sandbox/health", timeout=5) as response:
        assert json.loads(response.read())["status"] == "ok"
