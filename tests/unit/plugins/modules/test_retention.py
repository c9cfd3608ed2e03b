"""Retention against the sandbox: only this collection's old AMIs go, with their snapshots; everything else stays."""

import boto3
import pytest
from conftest import DEMO_ACCOUNTS, OWN_ACCOUNT
from fleet_helpers import backup_run, demo_targets, fleet_for, ops

from ansible_collections.cms.patching.plugins.module_utils import _retention
from ansible_collections.cms.patching.plugins.modules import ami_backup_verified

DAY = 86400


@pytest.fixture
def fleet(demo, aws):
    return fleet_for(aws)


@pytest.fixture
def history(aws, fleet):
    """Four runs, ten days apart, backing up web-01 and web-02; returns {run_id: {name: ami_id}}."""
    targets = [t for t in demo_targets(aws, fleet) if t["name"] in ("web-01", "web-02")]
    runs = {}
    for n in range(4):
        run_id = "run-%d" % n
        results = backup_run(aws, fleet, targets, run_id=run_id).run()
        runs[run_id] = {t["name"]: r["ami_id"] for t, r in zip(targets, results)}
        aws.state.clock.advance(10 * DAY)
    aws.state.calls.reset()
    return runs


def ec2(aws):
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")


def apply(aws, fleet, current="run-3", check_mode=False, keep_last=2, max_age_days=15):
    return _retention.apply(
        fleet, [(OWN_ACCOUNT, "us-east-1")], "demo", {"keep_last": keep_last, "max_age_days": max_age_days}, current, check_mode=check_mode, now=aws.state.now()
    )


def test_old_amis_beyond_keep_last_are_removed_with_their_snapshots(aws, fleet, history):
    client = ec2(aws)
    doomed = [history[run][name] for run in ("run-0", "run-1") for name in ("web-01", "web-02")]
    snaps = [m["Ebs"]["SnapshotId"] for image in client.describe_images(ImageIds=doomed)["Images"] for m in image["BlockDeviceMappings"]]
    assert len(snaps) == 6  # web-01 has a data volume: two snapshots per AMI
    removed, kept, errors = apply(aws, fleet)
    assert errors == []
    assert sorted(r["ami_id"] for r in removed) == sorted(doomed)
    assert {r["reason"] for r in kept} >= {"one of the newest 2"}
    remaining = {i["ImageId"] for i in client.describe_images(Owners=["self"])["Images"]}
    assert not remaining & set(doomed)
    assert {history["run-3"]["web-01"], history["run-2"]["web-01"]} <= remaining
    left = {s["SnapshotId"] for s in client.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not left & set(snaps)
    assert ops(aws)["ec2:DeregisterImage"] == 4 and ops(aws)["ec2:DeleteSnapshot"] == 6


def test_check_mode_removes_nothing(aws, fleet, history):
    removed, _kept, _errors = apply(aws, fleet, check_mode=True)
    assert len(removed) == 4
    assert not [op for op in ops(aws) if op.startswith(("ec2:Deregister", "ec2:Delete"))]


def test_young_current_and_in_use_amis_stay(aws, fleet, history):
    client = ec2(aws)
    used = history["run-0"]["web-01"]
    client.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": used, "InstanceType": "t3.micro"})
    removed, kept, _errors = apply(aws, fleet, current="run-0", keep_last=1, max_age_days=25)
    reasons = {k["ami_id"]: k["reason"] for k in kept}
    assert reasons[used].startswith("made by the current run")
    assert reasons[history["run-2"]["web-01"]] == "younger than 25 days"
    assert sorted(r["ami_id"] for r in removed) == sorted([history["run-1"]["web-01"], history["run-1"]["web-02"]])
    removed, kept, _errors = apply(aws, fleet, current="run-9", keep_last=1, max_age_days=25)
    reasons = {k["ami_id"]: k["reason"] for k in kept}
    assert reasons[used].startswith("used by launch template lt-")


def test_amis_not_made_by_this_collection_are_never_touched(aws, fleet, history):
    client = ec2(aws)
    instance = client.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["db-01"]}])["Reservations"][0]["Instances"][0]
    foreign = client.create_image(InstanceId=instance["InstanceId"], Name="someone-elses-backup")["ImageId"]
    aws.state.clock.advance(100 * DAY)
    removed, kept, _errors = apply(aws, fleet, keep_last=1, max_age_days=1)
    assert foreign not in {r["ami_id"] for r in removed + kept}
    assert foreign in {i["ImageId"] for i in client.describe_images(Owners=["self"])["Images"]}


def test_module_retain_mode(aws, history, run_module, monkeypatch):
    # The module ages AMIs by the controller's clock; here that clock follows the sandbox's, which the fixture moved 40 days on.
    monkeypatch.setattr(_retention, "_now", aws.state.now)
    args = dict(
        accounts=DEMO_ACCOUNTS, mode="retain", lz="demo", run_id="run-3", regions=["us-east-1", "eu-west-1"], retention={"keep_last": 2, "max_age_days": 15}
    )
    result = run_module(ami_backup_verified, args, check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["changed"] is True and len(result["removed"]) == 4 and result["summary"]["removed"] == 4
    result = run_module(ami_backup_verified, args)
    assert len(result["removed"]) == 4
    again = run_module(ami_backup_verified, args)
    assert again["changed"] is False and again["removed"] == []


def test_module_retain_needs_regions(aws, run_module):
    result = run_module(ami_backup_verified, dict(accounts=DEMO_ACCOUNTS, mode="retain", lz="demo", retention={"keep_last": 0}))
    assert result.failed
    assert "regions: mode=retain needs the regions to clean up" in result["msg"] and "retention.keep_last: must be at least 1" in result["msg"]
