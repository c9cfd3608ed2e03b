"""The iam_enforcement setting: the shipped policies on the demo's principals, every call authorised, AWS's refusals."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox import iam_enforcement
from sandbox.server import Sandbox

PAYMENTS_ROLE = "arn:aws:iam::210987654321:role/CmsPatchingRole"


@pytest.fixture
def enforced(sandbox: Sandbox) -> Sandbox:
    sandbox.seed("demo")
    sandbox.state.update_settings(iam_enforcement=1)
    return sandbox


def caller(client: Any, service: str) -> Any:
    return client(service, **iam_enforcement.CALLER_CREDENTIALS)


def payments(client: Any, service: str) -> Any:
    sts = caller(client, "sts")
    creds = sts.assume_role(RoleArn=PAYMENTS_ROLE, RoleSessionName="test", ExternalId="cms-demo")["Credentials"]
    return client(service, aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])


def refusal(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    return {
        "code": caught.value.response["Error"]["Code"],
        "message": caught.value.response["Error"]["Message"],
        "status": caught.value.response["ResponseMetadata"]["HTTPStatusCode"],
    }


def test_off_by_default_the_test_keys_work(sandbox: Sandbox, client: Any) -> None:
    sandbox.seed("demo")
    assert sandbox.state.settings.iam_enforcement == 0
    assert client("ec2").describe_instances()["Reservations"]


def test_on_only_known_keys_are_accepted_and_seeding_is_not_authorised(sandbox: Sandbox, client: Any) -> None:
    sandbox.state.update_settings(iam_enforcement=1)
    sandbox.seed("demo")  # the seeder's own requests (test keys, X-Cms-Sandbox-Internal) pass
    assert refusal(lambda: client("ec2").describe_instances())["code"] == "AuthFailure"
    assert caller(client, "ec2").describe_instances()["Reservations"]
    assert caller(client, "sts").get_caller_identity()["Arn"] == "arn:aws:iam::123456789012:user/cms-patching"
    assert payments(client, "ssm").describe_instance_properties()["InstanceProperties"]  # the SSM read the phase policies grant


def test_refusals_name_the_action_in_each_services_format(enforced: Sandbox, client: Any) -> None:
    iam_enforcement.attach(["discovery"])
    ec2 = refusal(lambda: caller(client, "ec2").describe_images(Owners=["self"]))
    assert ec2["code"] == "UnauthorizedOperation" and ec2["status"] == 403
    assert ec2["message"].startswith("You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/cms-patching")
    assert "is not authorized to perform: ec2:DescribeImages" in ec2["message"]
    ssm = refusal(lambda: payments(client, "ssm").list_commands())
    assert ssm["code"] == "AccessDeniedException" and ssm["status"] == 400
    assert "arn:aws:sts::210987654321:assumed-role/CmsPatchingRole/test is not authorized to perform: ssm:ListCommands" in ssm["message"]
    other_role = "arn:aws:iam::210987654321:role/OrganizationAccountAccessRole"
    sts = refusal(lambda: caller(client, "sts").assume_role(RoleArn=other_role, RoleSessionName="test"))
    assert sts["code"] == "AccessDenied" and sts["status"] == 403
    assert "is not authorized to perform: sts:AssumeRole on resource: %s" % other_role in sts["message"]


def test_removed_action_is_refused_and_the_rest_of_the_policy_stays(enforced: Sandbox, client: Any) -> None:
    iam_enforcement.attach(["backup"], remove_actions=["ec2:DescribeSnapshots"])
    ec2 = caller(client, "ec2")
    ec2.describe_images(Owners=["self"])
    assert "ec2:DescribeSnapshots" in refusal(lambda: ec2.describe_snapshots(OwnerIds=["self"]))["message"]


def test_reset_turns_it_off_and_a_new_start_attaches_every_phase(enforced: Sandbox, client: Any) -> None:
    iam_enforcement.attach(["discovery"])
    enforced.reset()
    assert enforced.state.settings.iam_enforcement == 0
    enforced.seed("demo")
    enforced.state.update_settings(iam_enforcement=1)
    for call in (lambda: caller(client, "ec2").describe_images(Owners=["self"]), lambda: payments(client, "ssm").list_commands()):
        call()


def test_control_api_switches_it_on(sandbox: Sandbox, client: Any) -> None:
    sandbox.seed("demo")
    request = urllib.request.Request(
        sandbox.endpoint + "/_sandbox/settings", data=json.dumps({"iam_enforcement": 1}).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as answer:
        assert json.load(answer)["iam_enforcement"] == 1
    unknown_key = refusal(lambda: client("ssm").list_commands())
    assert unknown_key == {"code": "UnrecognizedClientException", "message": "The security token included in the request is invalid.", "status": 400}
    bad_secret = dict(iam_enforcement.CALLER_CREDENTIALS, aws_secret_access_key="wrong")
    assert refusal(lambda: client("ssm", **bad_secret).list_commands())["code"] == "InvalidSignatureException"
    assert refusal(lambda: client("sts", **bad_secret).get_caller_identity())["code"] == "SignatureDoesNotMatch"
    assert caller(client, "ssm").list_commands()["Commands"] == []


def test_moto_sees_actions_on_any_resource_and_sts_statements_keep_their_roles() -> None:
    backup = iam_enforcement.as_moto_evaluates(iam_enforcement.load_policy("backup"), remove_actions=["ec2:CreateImage"])
    assert all(s["Resource"] == "*" and "Condition" not in s for s in backup["Statement"])
    assert not [s for s in backup["Statement"] if "ec2:CreateImage" in s["Action"]]
    assert len(backup["Statement"]) == len(iam_enforcement.load_policy("backup")["Statement"]) - 2  # both CreateImage statements held only it
    caller_policy = iam_enforcement.as_moto_evaluates(iam_enforcement.load_policy("caller-assume-role"))
    assert caller_policy["Statement"][0]["Resource"] == iam_enforcement.load_policy("caller-assume-role")["Statement"][0]["Resource"]


def test_attach_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="iam/<name>.json for: no-such-phase"):
        iam_enforcement.attach(["no-such-phase"])
