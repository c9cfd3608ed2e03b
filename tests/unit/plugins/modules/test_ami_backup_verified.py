"""ami_backup_verified against the sandbox: whole-machine verification, the failure modes, idempotence, cost."""

import boto3
import pytest
from conftest import DEMO_ACCOUNTS, OWN_ACCOUNT
from fleet_helpers import backup_run, demo_targets, fleet_for, ops

from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.modules import ami_backup_verified


@pytest.fixture
def fleet(demo, aws):
    return fleet_for(aws)


@pytest.fixture
def targets(fleet, aws):
    found = demo_targets(aws, fleet)
    aws.state.calls.reset()
    return found


def ec2(aws, region="us-east-1"):
    return boto3.client("ec2", region_name=region, endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")


def by_name(results, targets):
    names = {t["instance_id"]: t["name"] for t in targets}
    return {names[r["instance_id"]]: r for r in results}


def test_every_target_gets_a_whole_machine_verified_ami(aws, fleet, targets):
    run = backup_run(aws, fleet, targets)
    results = by_name(run.run(), targets)
    assert len(results) == 21
    verified = {n: r for n, r in results.items() if r["backup_status"] == "verified"}
    assert len(verified) == 20
    # The demo's injected failure: the AMI of web-03 ends "failed"; the others are unaffected.
    assert results["web-03"]["backup_status"] == "failed" and "is failed" in results["web-03"]["reason"]
    for target in targets:
        if target["name"] in verified:
            assert len(verified[target["name"]]["snapshot_ids"]) == len(target["volumes"])
    # db-01 has a 100 GiB data volume: two snapshots, each tagged, each completed.
    client = ec2(aws)
    db = verified["db-01"]
    snaps = client.describe_snapshots(SnapshotIds=db["snapshot_ids"])["Snapshots"]
    assert {s["State"] for s in snaps} == {"completed"} and len(snaps) == 2
    for snap in snaps:
        tags = _tags.as_dict(snap["Tags"])
        assert tags[_tags.RUN_ID] == "run-1" and tags[_tags.PATCHING] == "pre-patch" and tags["Team"] == "platform"
    image = client.describe_images(ImageIds=[db["ami_id"]])["Images"][0]
    tags = _tags.as_dict(image["Tags"])
    assert tags[_tags.INSTANCE_ID] == db["instance_id"] and tags[_tags.LZ] == "demo" and _tags.VERIFIED_AT in tags
    assert db["seconds"] >= 3  # the sandbox keeps AMIs pending 3 s and snapshots 4 s


def test_pending_snapshot_keeps_an_available_image_unverified(aws, fleet, targets):
    aws.state.update_settings(ami_pending_seconds=1, snapshot_pending_seconds=20)
    run = backup_run(aws, fleet, targets[:3], poll_interval=2)
    results = run.run(progress_interval=4)
    assert all(r["backup_status"] == "pending" for r in results)
    assert all(r["image_state"] == "available" for r in results)
    assert all("snapshot" in run.backups[r["instance_id"]].reason for r in results)


def test_snapshot_error_fails_the_backup(aws, fleet, targets):
    victim = targets[0]
    aws.state.faults.add("snapshot_error", instance_id=victim["instance_id"])
    results = {r["instance_id"]: r for r in backup_run(aws, fleet, targets[:3]).run()}
    assert results[victim["instance_id"]]["backup_status"] == "failed"
    assert "is error" in results[victim["instance_id"]]["reason"]
    assert [r["backup_status"] for i, r in results.items() if i != victim["instance_id"]] == ["verified", "verified"]


def test_stuck_ami_fails_at_the_deadline(aws, fleet, targets):
    victim = targets[1]
    aws.state.faults.add("ami_stuck", instance_id=victim["instance_id"])
    results = {r["instance_id"]: r for r in backup_run(aws, fleet, targets[:3], wait_timeout=60).run()}
    assert results[victim["instance_id"]]["backup_status"] == "failed"
    assert results[victim["instance_id"]]["reason"].startswith("not verified within wait_timeout: AMI")
    assert results[victim["instance_id"]]["seconds"] >= 60
    assert sum(r["backup_status"] == "verified" for r in results.values()) == 2


def test_rerun_of_the_same_run_finds_its_amis(aws, fleet, targets):
    first = {r["instance_id"]: r["ami_id"] for r in backup_run(aws, fleet, targets[:4]).run()}
    aws.state.calls.reset()
    second = backup_run(aws, fleet, targets[:4]).run()
    assert {r["instance_id"]: r["ami_id"] for r in second} == first
    assert not any(r["created"] for r in second)
    assert "ec2:CreateImage" not in ops(aws)
    # A new run makes new AMIs.
    third = backup_run(aws, fleet, targets[:4], run_id="run-2").run()
    assert not set(r["ami_id"] for r in third) & set(first.values())


def test_progress_return_then_resume_without_new_amis(aws, fleet, targets):
    run = backup_run(aws, fleet, targets[:5], poll_interval=1)
    first = run.run(progress_interval=1)
    assert sum(r["backup_status"] == "pending" for r in first) == 5
    creates = ops(aws)["ec2:CreateImage"]
    second = backup_run(aws, fleet, targets[:5], poll_interval=1).run()
    assert all(r["backup_status"] == "verified" for r in second)
    assert ops(aws)["ec2:CreateImage"] == creates


def test_throttled_create_image_is_retried(aws, fleet, targets):
    aws.state.faults.add("throttle", operation="ec2:CreateImage", every=3)
    results = backup_run(aws, fleet, targets[:6]).run()
    assert all(r["backup_status"] == "verified" for r in results)
    assert aws.state.calls.snapshot()["throttled"].get("ec2:CreateImage", 0) >= 2
    assert fleet.stats.retries["ec2:CreateImage"] >= 2
    # Exactly one AMI per instance despite the retries.
    images = ec2(aws).describe_images(Owners=["self"], Filters=[_tags.tag_filter(_tags.RUN_ID, "run-1")])["Images"]
    assert len(images) == len([t for t in targets[:6] if t["region"] == "us-east-1" and t["account_id"] == OWN_ACCOUNT])


def test_unknown_instance_fails_alone(aws, fleet, targets):
    ghost = dict(targets[0], instance_id="i-0123456789abcdef0", name="ghost", volumes=[])
    results = {r["instance_id"]: r for r in backup_run(aws, fleet, [ghost] + targets[:2]).run()}
    assert results["i-0123456789abcdef0"]["backup_status"] == "failed"
    assert "CreateImage failed: InvalidInstanceID.NotFound" in results["i-0123456789abcdef0"]["reason"]
    assert [results[t["instance_id"]]["backup_status"] for t in targets[:2]] == ["verified", "verified"]


def test_volumes_are_read_when_not_given(aws, fleet, targets):
    bare = [{k: t[k] for k in ("instance_id", "account_id", "region", "name")} for t in targets[:3]]
    results = backup_run(aws, fleet, bare).run()
    assert all(r["backup_status"] == "verified" for r in results)
    assert ops(aws)["ec2:DescribeInstances"] >= 1


def test_check_mode_creates_nothing(aws, targets, run_module):
    args = dict(accounts=DEMO_ACCOUNTS, lz="demo", run_id="run-check", instances=targets[:4], poll_interval=1)
    result = run_module(ami_backup_verified, args, check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["changed"] is True
    assert {r["backup_status"] for r in result["instances"]} == {"skipped"}
    assert all("check mode" in r["reason"] for r in result["instances"])
    assert not [op for op in ops(aws) if op.startswith(("ec2:Create", "ec2:Deregister", "ec2:Delete"))]


def test_module_verifies_and_reports(aws, targets, run_module):
    aws.state.update_settings(ami_pending_seconds=0, snapshot_pending_seconds=0)
    args = dict(accounts=DEMO_ACCOUNTS, lz="demo", run_id="run-m", instances=targets[:3], poll_interval=1)
    result = run_module(ami_backup_verified, args)
    assert not result.failed, result.get("msg")
    assert result["summary"]["verified"] == 3 and result["pending"] == 0 and result["changed"] is True
    assert result["progress"]["line"].startswith("backup round")
    assert result["api_calls"]["calls"]["ec2:CreateImage"] == 3


def test_module_input_errors_name_the_option(aws, targets, run_module):
    bad = dict(targets[0], instance_id="i-123")
    args = dict(accounts=DEMO_ACCOUNTS, lz="demo", instances=[bad, {"instance_id": "i-01234567"}], name_template="x-{host}")
    result = run_module(ami_backup_verified, args)
    assert result.failed
    text = " | ".join(result["problems"])
    assert "run_id: required for mode=create" in text
    assert "instances[0]: 'i-123' is not an EC2 instance ID" in text
    assert "instances[1]: missing account_id, region" in text
    assert "name_template: unknown placeholder {host}" in text
    assert aws.state.calls.snapshot()["total"] == 0


def test_verify_mode_checks_the_newest_ami_and_creates_nothing(aws, fleet, targets):
    backup_run(aws, fleet, targets[:3], run_id="run-a").run()
    aws.state.clock.advance(60)
    newer = {r["instance_id"]: r["ami_id"] for r in backup_run(aws, fleet, targets[:2], run_id="run-b").run()}
    aws.state.calls.reset()
    results = {r["instance_id"]: r for r in backup_run(aws, fleet, targets[:4], run_id=None).run(create=False)}
    assert "ec2:CreateImage" not in ops(aws)
    for instance_id, ami in newer.items():
        assert results[instance_id]["ami_id"] == ami and results[instance_id]["backup_status"] == "verified"
    assert results[targets[2]["instance_id"]]["backup_status"] == "verified"
    assert results[targets[3]["instance_id"]]["backup_status"] == "failed"
    assert "no pre-patch AMI of this instance found for landing zone demo" in results[targets[3]["instance_id"]]["reason"]


def test_backup_cost_beyond_create_image_at_scale(aws):
    aws.seed({"synthetic": {"count": 300, "accounts": [OWN_ACCOUNT], "regions": ["us-east-1"], "managed_ratio": 1.0, "reservations": 3}})
    fleet = fleet_for(aws, accounts=[{"account_id": OWN_ACCOUNT}])
    records, _errors = __import__("ansible_collections.cms.patching.plugins.module_utils._scan", fromlist=["scan"]).scan(
        fleet, [OWN_ACCOUNT], ["us-east-1"], {}, {"instance_states": ["running"], "require_ssm_online": False}
    )
    targets = [r for r in records if r["target"]]
    fleet.stats.calls.clear()
    results = backup_run(aws, fleet, targets).run()
    assert len(results) == len(targets) >= 250
    assert all(r["backup_status"] == "verified" for r in results)
    calls = dict(fleet.stats.calls)
    creates = calls.pop("ec2:CreateImage")
    assert creates == len(targets)
    assert sum(calls.values()) / len(targets) <= 0.1, calls


def test_an_aws_error_reading_state_fails_the_instances_with_the_reason(aws, targets, run_module):
    aws.state.faults.add("throttle", operation="ec2:DescribeImages", rate=1.0)
    args = dict(accounts=DEMO_ACCOUNTS, lz="demo", run_id="run-err", instances=targets[:2], retries={"max_attempts": 2, "base_delay": 0.01})
    result = run_module(ami_backup_verified, args)
    assert not result.failed
    assert [r["backup_status"] for r in result["instances"]] == ["failed", "failed"]
    assert all("could not read AMI state" in r["reason"] and "RequestLimitExceeded" in r["reason"] for r in result["instances"])


def test_an_aws_error_outside_any_instance_is_a_clean_module_failure(aws, targets, run_module):
    aws.state.faults.add("throttle", operation="ec2:DescribeInstances", rate=1.0)
    bare = [{k: t[k] for k in ("instance_id", "account_id", "region")} for t in targets[:2]]
    args = dict(accounts=DEMO_ACCOUNTS, lz="demo", run_id="run-err", instances=bare, retries={"max_attempts": 2, "base_delay": 0.01})
    result = run_module(ami_backup_verified, args)
    assert result.failed
    assert result["msg"].startswith("AWS error: RequestLimitExceeded") and result["error_code"] == "RequestLimitExceeded"
    assert result["api_calls"]["retries"]["ec2:DescribeInstances"] == 1
