"""Retention against the sandbox: only this collection's old AMIs go, with their snapshots; everything else stays."""

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import DEMO_ACCOUNTS, OWN_ACCOUNT
from fleet_helpers import backup_run, demo_targets, fleet_for, ops

from ansible_collections.cms.patching.plugins.module_utils import _retention, _tags
from ansible_collections.cms.patching.plugins.module_utils._retry import ServerClock
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


def ec2(aws, service="ec2"):
    return boto3.client(service, region_name="us-east-1", endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")


def apply(aws, fleet, current="run-3", check_mode=False, keep_last=2, max_age_days=15, sleeps=None):
    return _retention.apply(
        fleet,
        [(OWN_ACCOUNT, "us-east-1")],
        "demo",
        {"keep_last": keep_last, "max_age_days": max_age_days},
        current,
        check_mode=check_mode,
        now=aws.state.now(),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )


class Unkind:
    """An EC2 client that answers some calls as AWS may where the sandbox is still kind; overrides get (real client, **kwargs)."""

    def __init__(self, client, overrides):
        self._client, self._overrides = client, overrides

    def __getattr__(self, name):
        if name in self._overrides:
            return lambda **kwargs: self._overrides[name](self._client, **kwargs)
        return getattr(self._client, name)


def unkind(fleet, **overrides):
    real = fleet.client

    def client(service, account_id, region):
        found = real(service, account_id, region)
        return Unkind(found, overrides) if service == "ec2" else found

    fleet.client = client


def in_use_error(snap_id):
    error = {"Code": "InvalidSnapshot.InUse", "Message": "The snapshot %s is currently in use by ami-0" % snap_id}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "DeleteSnapshot")


def deregister_keeping_snapshots(client, **kwargs):
    """AWS deregistered the image but answers that it could not delete its snapshots."""
    image = client.describe_images(ImageIds=[kwargs["ImageId"]])["Images"][0]
    client.deregister_image(ImageId=kwargs["ImageId"])
    results = [{"SnapshotId": m["Ebs"]["SnapshotId"], "ReturnCode": "internal-error"} for m in image["BlockDeviceMappings"]]
    return {"Return": True, "DeleteSnapshotResults": results}


def in_use_for(times):
    """DeleteSnapshot answers InvalidSnapshot.InUse the first `times` calls per snapshot (the window after DeregisterImage)."""
    seen = {}

    def delete_snapshot(client, **kwargs):
        seen[kwargs["SnapshotId"]] = seen.get(kwargs["SnapshotId"], 0) + 1
        if seen[kwargs["SnapshotId"]] <= times:
            raise in_use_error(kwargs["SnapshotId"])
        return client.delete_snapshot(**kwargs)

    return delete_snapshot


def snapshots_of(client, ami_ids):
    return [m["Ebs"]["SnapshotId"] for image in client.describe_images(ImageIds=ami_ids)["Images"] for m in image["BlockDeviceMappings"]]


def all_snapshots(client):
    return {s["SnapshotId"] for s in client.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def test_old_amis_beyond_keep_last_are_removed_with_their_snapshots(aws, fleet, history):
    client = ec2(aws)
    doomed = [history[run][name] for run in ("run-0", "run-1") for name in ("web-01", "web-02")]
    snaps = [m["Ebs"]["SnapshotId"] for image in client.describe_images(ImageIds=doomed)["Images"] for m in image["BlockDeviceMappings"]]
    assert len(snaps) == 6  # web-01 has a data volume: two snapshots per AMI
    removed, kept, errors, orphans = apply(aws, fleet)
    assert errors == [] and orphans == []
    assert sorted(r["ami_id"] for r in removed) == sorted(doomed)
    assert {r["reason"] for r in kept} >= {"one of the newest 2 verified"}
    remaining = {i["ImageId"] for i in client.describe_images(Owners=["self"])["Images"]}
    assert not remaining & set(doomed)
    assert {history["run-3"]["web-01"], history["run-2"]["web-01"]} <= remaining
    left = {s["SnapshotId"] for s in client.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not left & set(snaps)
    # DeregisterImage deleted them (DeleteAssociatedSnapshots) and said so: no DeleteSnapshot needed.
    assert ops(aws)["ec2:DeregisterImage"] == 4 and "ec2:DeleteSnapshot" not in ops(aws)


def test_check_mode_removes_nothing(aws, fleet, history):
    removed, _kept, _errors, _orphans = apply(aws, fleet, check_mode=True)
    assert len(removed) == 4
    assert all(r["plan"].startswith("would deregister %s and delete its snapshots snap-" % r["ami_id"]) for r in removed)
    assert not [op for op in ops(aws) if op.startswith(("ec2:Deregister", "ec2:Delete"))]


def test_young_current_and_in_use_amis_stay(aws, fleet, history):
    client = ec2(aws)
    used = history["run-0"]["web-01"]
    client.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": used, "InstanceType": "t3.micro"})
    removed, kept, _errors, _orphans = apply(aws, fleet, current="run-0", keep_last=1, max_age_days=25)
    reasons = {k["ami_id"]: k["reason"] for k in kept}
    assert reasons[used].startswith("made by the current run")
    assert reasons[history["run-2"]["web-01"]] == "younger than 25 days"
    assert sorted(r["ami_id"] for r in removed) == sorted([history["run-1"]["web-01"], history["run-1"]["web-02"]])
    removed, kept, _errors, _orphans = apply(aws, fleet, current="run-9", keep_last=1, max_age_days=25)
    reasons = {k["ami_id"]: k["reason"] for k in kept}
    assert reasons[used].startswith("used by launch template lt-")


def test_amis_not_made_by_this_collection_are_never_touched(aws, fleet, history):
    client = ec2(aws)
    instance = client.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["db-01"]}])["Reservations"][0]["Instances"][0]
    foreign = client.create_image(InstanceId=instance["InstanceId"], Name="someone-elses-backup")["ImageId"]
    aws.state.clock.advance(100 * DAY)
    removed, kept, _errors, _orphans = apply(aws, fleet, keep_last=1, max_age_days=1)
    assert foreign not in {r["ami_id"] for r in removed + kept}
    assert foreign in {i["ImageId"] for i in client.describe_images(Owners=["self"])["Images"]}


def test_module_retain_mode(aws, history, run_module, monkeypatch):
    # The module ages AMIs by the controller's clock; here that clock follows the sandbox's, which the fixture moved 40 days on.
    monkeypatch.setattr(_retention, "_now", aws.state.now)
    monkeypatch.setattr(ServerClock, "now", lambda self: aws.state.now())
    args = dict(
        accounts=DEMO_ACCOUNTS, mode="retain", lz="demo", run_id="run-3", regions=["us-east-1", "eu-west-1"], retention={"keep_last": 2, "max_age_days": 15}
    )
    result = run_module(ami_backup_verified, args, check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["changed"] is True and len(result["removed"]) == 4 and result["summary"]["removed"] == 4
    assert result["orphan_snapshots"] == [] and result["summary"]["orphan_snapshots"] == 0
    assert all(r["plan"].startswith("would deregister ami-") for r in result["removed"])
    result = run_module(ami_backup_verified, args)
    assert len(result["removed"]) == 4
    again = run_module(ami_backup_verified, args)
    assert again["changed"] is False and again["removed"] == []


def test_module_retain_needs_regions(aws, run_module):
    result = run_module(ami_backup_verified, dict(accounts=DEMO_ACCOUNTS, mode="retain", lz="demo", retention={"keep_last": 0}))
    assert result.failed
    assert "regions: mode=retain needs the regions to clean up" in result["msg"] and "retention.keep_last: must be at least 1" in result["msg"]


def test_snapshots_aws_did_not_delete_are_retried_while_in_use(aws, fleet, history):
    client = ec2(aws)
    doomed = [history[run][name] for run in ("run-0", "run-1") for name in ("web-01", "web-02")]
    snaps = snapshots_of(client, doomed)
    unkind(fleet, deregister_image=deregister_keeping_snapshots, delete_snapshot=in_use_for(2))
    sleeps = []
    removed, _kept, errors, _orphans = apply(aws, fleet, sleeps=sleeps)
    assert errors == [] and len(removed) == 4
    assert not all_snapshots(client) & set(snaps)
    assert len(sleeps) == 2 and all(r["snapshots_left"] == [] for r in removed)


def test_snapshots_still_in_use_after_the_retries_are_reported(aws, fleet, history):
    client = ec2(aws)
    unkind(fleet, deregister_image=deregister_keeping_snapshots, delete_snapshot=in_use_for(100))
    removed, _kept, errors, _orphans = apply(aws, fleet)
    left = {s for r in removed for s in r["snapshots_left"]}
    assert len(left) == 6 and left <= all_snapshots(client)
    assert len(errors) == 6
    assert all("was deregistered but its snapshot snap-" in e and "InvalidSnapshot.InUse" in e for e in errors)
    # The next run (AWS kind again) finds them as orphans of AMIs that no longer exist, and deletes them.
    plain = fleet_for(aws)
    removed, _kept, errors, orphans = apply(aws, plain)
    assert errors == [] and {o["snapshot_id"] for o in orphans} == left
    assert all(o["deleted"] and o["reason"].startswith("its AMI ami-") for o in orphans)
    assert not all_snapshots(client) & left


def test_orphaned_snapshots_of_an_older_version_are_deleted(aws, fleet, history):
    client = ec2(aws)
    gone = history["run-0"]["web-01"]
    snaps = set(snapshots_of(client, [gone]))
    client.deregister_image(ImageId=gone)  # what versions before DeleteAssociatedSnapshots left behind
    removed, _kept, _errors, orphans = apply(aws, fleet, check_mode=True)
    assert {o["snapshot_id"] for o in orphans} == snaps
    assert all(o["plan"] == "would delete snapshot %s: its AMI %s no longer exists" % (o["snapshot_id"], gone) for o in orphans)
    assert snaps <= all_snapshots(client)
    removed, _kept, errors, orphans = apply(aws, fleet)
    assert errors == [] and {o["snapshot_id"] for o in orphans} == snaps
    assert not all_snapshots(client) & snaps
    # An orphan younger than max_age_days may belong to an image still being created: it stays.
    young = history["run-3"]["web-02"]
    young_snaps = set(snapshots_of(client, [young]))
    client.deregister_image(ImageId=young)
    _removed, _kept, _errors, orphans = apply(aws, fleet, current="run-9")
    assert not {o["snapshot_id"] for o in orphans} & young_snaps and young_snaps <= all_snapshots(client)


def test_keep_last_counts_only_verified_amis_and_keeps_the_newest_verified(aws, fleet, history):
    client = ec2(aws)
    # web-01's two newest AMIs failed verification (no verified-at tag).
    client.delete_tags(Resources=[history["run-2"]["web-01"], history["run-3"]["web-01"]], Tags=[{"Key": _tags.VERIFIED_AT}])
    removed, kept, _errors, _orphans = apply(aws, fleet)
    reasons = {k["ami_id"]: k["reason"] for k in kept}
    assert reasons[history["run-1"]["web-01"]] == "the instance's newest verified AMI"
    assert reasons[history["run-0"]["web-01"]] == "one of the newest 2 verified"
    gone = {r["ami_id"]: r["reason"] for r in removed}
    assert gone[history["run-2"]["web-01"]] == "older than 15 days and never verified"


def test_images_any_launch_template_version_or_launch_configuration_uses_stay(aws, fleet, history):
    client = ec2(aws)
    pinned, aliased, configured = history["run-0"]["web-01"], history["run-0"]["web-02"], history["run-1"]["web-01"]
    template = client.create_launch_template(LaunchTemplateName="asg", LaunchTemplateData={"ImageId": pinned, "InstanceType": "t3.micro"})
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    # Version 1 is neither $Latest nor $Default any more, but an Auto Scaling group may pin it.
    for image_id in ("resolve:ssm:/cms/golden-ami", history["run-3"]["web-01"]):
        client.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": image_id})
    client.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion="3")
    ec2(aws, "ssm").put_parameter(Name="/cms/golden-ami", Value=aliased, Type="String")
    ec2(aws, "autoscaling").create_launch_configuration(LaunchConfigurationName="legacy", ImageId=configured, InstanceType="t3.micro")
    removed, kept, errors, _orphans = apply(aws, fleet)
    assert errors == []
    reasons = {k["ami_id"]: k["reason"] for k in kept}
    assert reasons[pinned] == "used by launch template %s (asg) version 1" % template_id
    assert reasons[aliased] == "used by launch template %s (asg) version 2 through resolve:ssm:/cms/golden-ami" % template_id
    assert reasons[configured] == "used by launch configuration legacy"
    assert [r["ami_id"] for r in removed] == [history["run-1"]["web-02"]]
    assert ops(aws)["ssm:GetParameters"] == 1 and ops(aws)["autoscaling:DescribeLaunchConfigurations"] == 1
