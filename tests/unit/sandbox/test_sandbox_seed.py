"""The demo landing zone as the seeder creates it (seeded once for this module; the tests only read)."""

from __future__ import annotations

import collections

import pytest
from sandbox_testkit import OTHER_ACCOUNT, OTHER_ROLE, OWN_ACCOUNT


@pytest.fixture(scope="module")
def demo(sandbox):
    sandbox.reset()
    return sandbox.seed("demo")


@pytest.fixture(autouse=True)
def fresh():
    """Overrides the per-test reset: every test here reads the one demo seed."""


def _by_name(summary):
    return {row["name"]: row for row in summary["instances"]}


def _other_account_ec2(client, region):
    credentials = client("sts").assume_role(RoleArn=OTHER_ROLE, RoleSessionName="test", ExternalId="cms-demo")["Credentials"]
    return client(
        "ec2",
        region=region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def test_demo_has_thirty_landing_zone_instances_in_two_accounts_and_regions(demo):
    cells = collections.Counter((row["account"], row["region"]) for row in demo["instances"] if row["in_landing_zone"])
    assert sum(cells.values()) == 30
    assert set(cells) == {(account, region) for account in (OWN_ACCOUNT, OTHER_ACCOUNT) for region in ("us-east-1", "eu-west-1")}


def test_demo_counts_per_account_and_region(demo):
    assert demo["counts"] == {
        f"{OWN_ACCOUNT}/eu-west-1": {"instances": 7, "running": 6, "stopped": 1, "managed": 6, "in_landing_zone": 6},
        f"{OWN_ACCOUNT}/us-east-1": {"instances": 10, "running": 9, "stopped": 1, "managed": 9, "in_landing_zone": 9},
        f"{OTHER_ACCOUNT}/eu-west-1": {"instances": 8, "running": 7, "stopped": 1, "managed": 6, "in_landing_zone": 7},
        f"{OTHER_ACCOUNT}/us-east-1": {"instances": 9, "running": 8, "stopped": 1, "managed": 8, "in_landing_zone": 8},
    }


def test_demo_faults_are_resolved_to_the_named_instances(demo):
    names = _by_name(demo)
    assert {(fault["kind"], fault["instance_id"]) for fault in demo["faults"]} == {
        ("ami_fail", names["web-03"]["instance_id"]),
        ("patch_fail", names["pay-web-02"]["instance_id"]),
    }


def test_demo_has_one_managed_instance_whose_agent_lost_connection(demo):
    running_lost = [row["name"] for row in demo["instances"] if row["ping_status"] == "ConnectionLost" and row["state"] == "running"]
    assert running_lost == ["db-eu-01"]


def test_demo_tags_every_landing_zone_instance_and_marks_one_never_patched(demo):
    rows = demo["instances"]
    assert all(row["tags"].get("Environment") == "demo" for row in rows if row["in_landing_zone"])
    assert all(row["tags"].get("Environment") != "demo" for row in rows if not row["in_landing_zone"])
    assert [row["name"] for row in rows if row["tags"].get("Patch") == "never"] == ["legacy-01"]


def test_demo_instances_are_in_the_right_account_and_keep_their_root_volume(demo, client):
    names = _by_name(demo)
    pay_db = names["pay-db-01"]
    instance = _other_account_ec2(client, "us-east-1").describe_instances(InstanceIds=[pay_db["instance_id"]])["Reservations"][0]["Instances"][0]
    assert sorted(mapping["DeviceName"] for mapping in instance["BlockDeviceMappings"]) == ["/dev/sdf", "/dev/xvda"]
    assert client("ec2").describe_instances(Filters=[{"Name": "instance-id", "Values": [pay_db["instance_id"]]}])["Reservations"] == []


def test_demo_managed_instances_appear_in_ssm_of_their_account(demo, client):
    own_managed = {row["instance_id"] for row in demo["instances"] if row["managed"] and (row["account"], row["region"]) == (OWN_ACCOUNT, "eu-west-1")}
    listed = client("ssm", region="eu-west-1").describe_instance_information(MaxResults=50)["InstanceInformationList"]
    assert {item["InstanceId"] for item in listed} == own_managed
