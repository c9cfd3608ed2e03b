"""ec2_rollback against the sandbox: the machine really goes back, failures leave it startable, check mode, resume."""

import threading

import boto3
import pytest
from conftest import DEMO_ACCOUNTS, OWN_ACCOUNT
from demo_fleet import ROLLBACK_OPTIONS

from sandbox.ssm.patch_catalog import missing_count
from fleet_helpers import backup_run, demo_targets, fleet_for, ops, patch_run

from ansible_collections.cms.patching.plugins.module_utils import _cancel, _rollback
from ansible_collections.cms.patching.plugins.module_utils._rollback import RollbackRun

WRITES = ("Create", "Attach", "Detach", "Stop", "Start", "Delete", "Modify", "Send", "Reboot")


def rollback_run(aws, fleet, instances, run_id="run-1", check_mode=False, **options):
    return RollbackRun(fleet, [dict(i) for i in instances], run_id, dict(ROLLBACK_OPTIONS, **options), check_mode, aws.state.now, aws.state.clock.advance)


def ec2(aws, region="us-east-1"):
    return boto3.client("ec2", region_name=region, endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")


def ssm(aws, region="us-east-1"):
    return boto3.client("ssm", region_name=region, endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")


def writes(aws):
    return {op: n for op, n in ops(aws).items() if op.split(":")[1].startswith(WRITES)}


def mappings(aws, instance_id):
    inst = ec2(aws).describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return inst, {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]}


@pytest.fixture
def fleet(demo, aws):
    return fleet_for(aws)


@pytest.fixture
def pair(aws, fleet):
    """web-01 (root + a 20 GiB data volume) and app-win-01 (Windows), backed up in run-1, then patched."""
    targets = [t for t in demo_targets(aws, fleet) if t["name"] in ("web-01", "app-win-01")]
    assert {r["backup_status"] for r in backup_run(aws, fleet, targets).run()} == {"verified"}
    before = {t["instance_id"]: mappings(aws, t["instance_id"])[1] for t in targets}
    assert {r["patch_status"] for r in patch_run(aws, fleet, targets).run()} == {"success"}
    aws.state.calls.reset()
    return sorted(targets, key=lambda t: t["name"]), before


def by_name(results):
    return {r["name"]: r for r in results}


def real_missing(aws, instance_id, platform):
    return len(aws.state.commands.patch_state(OWN_ACCOUNT, "us-east-1", instance_id, platform, aws.state.now()).current_missing)


def test_rolls_back_every_volume_and_the_patch_state(aws, fleet, pair):
    targets, before = pair
    web = next(t for t in targets if t["name"] == "web-01")
    assert real_missing(aws, web["instance_id"], "Linux") == 0  # patched
    results = by_name(rollback_run(aws, fleet, targets).run())
    assert {r["rollback_status"] for r in results.values()} == {"rolled_back"}, results
    inst, now = mappings(aws, web["instance_id"])
    assert inst["State"]["Name"] == "running"
    old = before[web["instance_id"]]
    assert set(now) == set(old) and not set(now.values()) & set(old.values())
    volumes = {v["VolumeId"]: v for v in ec2(aws).describe_volumes()["Volumes"]}
    image = ec2(aws).describe_images(ImageIds=[results["web-01"]["ami_id"]])["Images"][0]
    snaps = {m["DeviceName"]: m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]}
    for device, volume_id in now.items():
        assert volumes[volume_id]["SnapshotId"] == snaps[device]
        replaced = volumes[old[device]]
        assert replaced["State"] == "available"
        tags = {t["Key"]: t["Value"] for t in replaced["Tags"]}
        assert tags[_rollback.REPLACED_BY] == "run-1" and tags[_rollback.DEVICE] == device and _rollback.REPLACED_AT in tags
    assert {v["device"]: (v["old_volume_id"], v["new_volume_id"]) for v in results["web-01"]["rollback_volumes"]} == {d: (old[d], now[d]) for d in now}
    # The data volume keeps the original's type and size.
    assert volumes[now["/dev/sdf"]]["VolumeType"] == volumes[old["/dev/sdf"]]["VolumeType"] == "gp3"
    assert volumes[now["/dev/sdf"]]["Size"] == 20
    # The machine went back: exactly the patches it missed before the patch run are missing again (the sandbox's patch
    # catalogue gives each instance 0-8; instance IDs are random, so the count comes from the catalogue, not a constant).
    assert real_missing(aws, web["instance_id"], "Linux") == missing_count(web["instance_id"])
    # The Windows instance has no data volume: never stopped.
    assert ops(aws).get("ec2:StopInstances", 0) == 1 and ops(aws)["ec2:CreateReplaceRootVolumeTask"] == 2


def test_windows_root_only_is_not_stopped(aws, fleet, pair):
    targets, before = pair
    win = next(t for t in targets if t["name"] == "app-win-01")
    result = rollback_run(aws, fleet, [win]).run()[0]
    assert result["rollback_status"] == "rolled_back" and result["step"] == "done"
    assert "ec2:StopInstances" not in ops(aws) and "ec2:CreateVolume" not in ops(aws)
    _inst, now = mappings(aws, win["instance_id"])
    assert (
        now[result["rollback_volumes"][0]["device"]]
        == result["rollback_volumes"][0]["new_volume_id"]
        != before[win["instance_id"]][result["rollback_volumes"][0]["device"]]
    )


def test_check_mode_plans_without_writing(aws, fleet, pair):
    targets, _before = pair
    results = by_name(rollback_run(aws, fleet, targets, check_mode=True).run())
    assert writes(aws) == {}
    web = results["web-01"]
    assert web["rollback_status"] == "skipped" and web["error"] == ""
    assert web["plan"].startswith("would roll back to %s: " % web["ami_id"])
    assert "/dev/sdf" in web["plan"] and "20 GiB gp3" in web["plan"] and "not encrypted" in web["plan"] and "stopped and started" in web["plan"]
    assert "stopped" not in results["app-win-01"]["plan"]


def test_resume_never_starts_a_second_task_or_volume(aws, fleet, pair):
    targets, _before = pair
    first = rollback_run(aws, fleet, targets).run(wait=False)
    assert {r["rollback_status"] for r in first} == {"pending"}
    second = rollback_run(aws, fleet, targets).run()
    assert {r["rollback_status"] for r in second} == {"rolled_back"}
    assert ops(aws)["ec2:CreateVolume"] == 1
    tasks = ec2(aws).describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"]
    assert len(tasks) == 2
    aws.state.calls.reset()
    third = by_name(rollback_run(aws, fleet, targets).run())
    assert {r["rollback_status"] for r in third.values()} == {"rolled_back"}
    assert all(r["already_rolled_back"] for r in third.values())
    assert writes(aws) == {}
    check = by_name(rollback_run(aws, fleet, targets, check_mode=True).run())
    assert check["web-01"]["plan"].startswith("already rolled back")


def test_a_cancel_during_the_modules_wait_stops_the_rollback_there_and_a_rerun_resumes(aws, pair, run_module, monkeypatch):
    """ec2_rollback waits between poll rounds with _cancel.sleep: a cancel while it waits (what a SIGTERM/SIGINT to the
    module or its controller exiting amounts to) ends the module at once, reported cancelled, without another AWS call."""
    from ansible_collections.cms.patching.plugins.modules import ec2_rollback

    targets, _before = pair
    interruptible = _cancel.sleep
    waits = []

    def sleep(seconds):
        waits.append((seconds, aws.state.calls.snapshot()["total"]))
        # The cancel comes from elsewhere (the signal handler, the controller watch) while the module is in its wait.
        timer = threading.Timer(0.05, _cancel.cancel, ["received SIGTERM"])
        timer.start()
        try:
            interruptible(seconds)
        finally:
            timer.cancel()

    monkeypatch.setattr(_cancel, "sleep", sleep)
    args = dict(accounts=DEMO_ACCOUNTS, run_id="run-1", instances=targets, endpoint_url=aws.endpoint, region="us-east-1", poll_interval=2)
    result = run_module(ec2_rollback, args)
    assert result.failed and result["cancelled"] is True and result["msg"] == "cancelled: received SIGTERM", result
    # Stopped in the first wait, after the first round had started both rollbacks (app-win-01's root task, web-01's data
    # volume first); no call after it.
    assert [seconds for seconds, _calls in waits] == [2]
    assert ops(aws).get("ec2:CreateReplaceRootVolumeTask") == 1 and ops(aws).get("ec2:CreateVolume") == 1
    assert aws.state.calls.snapshot()["total"] == waits[0][1] == result["api_calls"]["total"]
    monkeypatch.setattr(_cancel, "sleep", interruptible)
    resumed = run_module(ec2_rollback, args)
    assert not resumed.failed and resumed["summary"]["rolled_back"] == 2, resumed
    # The rerun went on from AWS's state: web-01's root task is its first, nothing else was made twice.
    assert ops(aws)["ec2:CreateReplaceRootVolumeTask"] == 2 and ops(aws)["ec2:CreateVolume"] == 1


@pytest.mark.parametrize("step", ["volume_create", "root_replace", "attach", "start"])
def test_a_failure_at_each_step_leaves_the_instance_startable_and_the_old_volumes_intact(aws, fleet, pair, step):
    targets, before = pair
    web = next(t for t in targets if t["name"] == "web-01")
    aws.state.faults.add("rollback_fail", instance_id=web["instance_id"], step=step, count=1)
    result = rollback_run(aws, fleet, [web]).run()[0]
    assert result["rollback_status"] == "failed" and result["error"], result
    inst, now = mappings(aws, web["instance_id"])
    old = before[web["instance_id"]]
    volumes = {v["VolumeId"]: v for v in ec2(aws).describe_volumes()["Volumes"]}
    assert all(v in volumes for v in old.values())  # never deleted
    assert inst["RootDeviceName"] in now  # a stopped instance could start
    assert inst["State"]["Name"] in ("running", "stopped")
    if step in ("volume_create", "root_replace"):
        assert now == old and inst["State"]["Name"] == "running"
        assert "ec2:StopInstances" not in ops(aws)
    if step == "attach":
        assert now["/dev/sdf"] == old["/dev/sdf"] and "attached again" in result["error"]
        assert inst["State"]["Name"] == "stopped"
    if step == "start":
        assert inst["State"]["Name"] == "stopped" and "did not start" in result["error"]
    # The fault fired once: running again finishes the job, with no second task or volume for what was done.
    again = rollback_run(aws, fleet, [web]).run()[0]
    assert again["rollback_status"] == "rolled_back", again
    tasks = ec2(aws).describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"]
    assert len([t for t in tasks if t["TaskState"] == "succeeded"]) == 1
    restored = [v for v in ec2(aws).describe_volumes()["Volumes"] if {"Key": _rollback.RESTORED_BY, "Value": "run-1"} in v.get("Tags", [])]
    assert len([v for v in restored if v["State"] != "error"]) == 1


def test_gate_refuses_an_unverified_or_foreign_ami(aws, fleet, pair):
    targets, _before = pair
    results = rollback_run(aws, fleet, targets, run_id="run-other").run()
    assert {r["rollback_status"] for r in results} == {"skipped"}
    assert all(r["error"] == "no AMI of run run-other for this instance" for r in results)
    assert writes(aws) == {}
    web = next(t for t in targets if t["name"] == "web-01")
    image_id = ec2(aws).describe_images(Owners=["self"], Filters=[{"Name": "tag:cms:patching:instance-id", "Values": [web["instance_id"]]}])["Images"][0][
        "ImageId"
    ]
    ec2(aws).delete_tags(Resources=[image_id], Tags=[{"Key": "cms:patching:verified-at"}])
    aws.state.calls.reset()
    result = rollback_run(aws, fleet, [web]).run()[0]
    assert result["rollback_status"] == "skipped" and "never verified" in result["error"]
    assert writes(aws) == {}


def test_max_concurrent_bounds_instances_in_flight(aws, fleet, pair):
    targets, _before = pair
    run = rollback_run(aws, fleet, targets, max_concurrent=1)
    results = run.run(wait=False)
    assert sum(1 for rb in run.rollbacks.values() if rb.admitted) == 1
    assert [r["rollback_status"] for r in results] == ["pending", "pending"]
    assert ops(aws).get("ec2:CreateReplaceRootVolumeTask", 0) + ops(aws).get("ec2:CreateVolume", 0) == 1
    # The next call admits the second only when the first is done; both finish, one at a time.
    assert {r["rollback_status"] for r in rollback_run(aws, fleet, targets, max_concurrent=1).run()} == {"rolled_back"}


def test_module_check_mode_and_input_errors(aws, pair, run_module):
    from ansible_collections.cms.patching.plugins.modules import ec2_rollback

    targets, _before = pair
    args = dict(accounts=DEMO_ACCOUNTS, run_id="run-1", instances=targets, endpoint_url=aws.endpoint, region="us-east-1")
    result = run_module(ec2_rollback, args, check_mode=True)
    assert not result.failed and not result["changed"]
    assert result["summary"]["skipped"] == 2 and all(line.split(": ", 1)[1].startswith("skipped would roll back to") for line in result["lines"])
    assert writes(aws) == {} and result["api_calls"]["total"] > 0
    bad = run_module(ec2_rollback, dict(args, max_concurrent=0, instances=[{"instance_id": "i-1"}]))
    assert bad.failed and "max_concurrent: must be at least 1" in bad["msg"] and "instances[0]: missing account_id, region" in bad["msg"]


@pytest.fixture
def misses_patches(monkeypatch):
    """Every instance misses at least one patch before it is patched: the sandbox derives the count (0-8) from the random
    instance ID, so about 1 demo fleet in 9 has a web-01 that misses nothing, and its rescan could not tell the restored
    machine from the patched one."""
    from sandbox.ssm import patch_catalog  # pylint: disable=import-outside-toplevel

    original = patch_catalog.missing_count
    monkeypatch.setattr(patch_catalog, "missing_count", lambda instance_id: max(1, original(instance_id)))
    patch_catalog.profile.cache_clear()
    yield
    patch_catalog.profile.cache_clear()


def test_rescan_makes_ssm_report_the_restored_machine(aws, fleet, misses_patches, pair):
    targets, _before = pair
    web = next(t for t in targets if t["name"] == "web-01")
    reported = ssm(aws).describe_instance_patch_states(InstanceIds=[web["instance_id"]])["InstancePatchStates"][0]
    assert reported["Operation"] == "Install" and reported["MissingCount"] == 0
    result = rollback_run(aws, fleet, [web], rescan=True).run()[0]
    assert result["rollback_status"] == "rolled_back" and result["rescan"] == "success"
    reported = ssm(aws).describe_instance_patch_states(InstanceIds=[web["instance_id"]])["InstancePatchStates"][0]
    assert reported["Operation"] == "Scan" and reported["MissingCount"] == real_missing(aws, web["instance_id"], "Linux") > 0
    # Called again (a resume): the rescan of this run is found, not sent twice.
    rollback_run(aws, fleet, [web], rescan=True).run()
    scans = [c for c in ssm(aws).list_commands()["Commands"] if c["Comment"].endswith("rollback rescan")]
    assert len(scans) == 1
