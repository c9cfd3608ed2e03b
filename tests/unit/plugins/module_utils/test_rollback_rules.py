"""The rollback's rules without AWS: the gate, the volume plan, the order of the steps, and idempotence."""

import pytest

from ansible_collections.cms.patching.plugins.module_utils import _rollback as rb_rules
from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.module_utils._rollback import Rollback, client_token, decide, describe_plan, gate, volume_plan

RUN = "run-1"
IID = "i-0123456789abcdef0"


def tags(**kv):
    return [{"Key": k, "Value": v} for k, v in kv.items()]


def image(state="available", verified=True, run=RUN, instance=IID, devices=(("/dev/xvda", "snap-root"), ("/dev/sdf", "snap-data"))):
    t = {_tags.RUN_ID: run, _tags.INSTANCE_ID: instance}
    if verified:
        t[_tags.VERIFIED_AT] = "2026-12-01T10:00:00Z"
    return {
        "ImageId": "ami-1",
        "State": state,
        "Tags": tags(**t),
        "BlockDeviceMappings": [{"DeviceName": d, "Ebs": {"SnapshotId": s, "VolumeSize": 8, "VolumeType": "gp3"}} for d, s in devices],
    }


SNAPS = {"snap-root": {"State": "completed", "VolumeSize": 8}, "snap-data": {"State": "completed", "VolumeSize": 20}}


def instance(state="running", devices=(("/dev/xvda", "vol-root"), ("/dev/sdf", "vol-data")), statuses=None):
    statuses = statuses or {}
    return {
        "InstanceId": IID,
        "State": {"Name": state},
        "RootDeviceName": "/dev/xvda",
        "Placement": {"AvailabilityZone": "us-east-1a"},
        "BlockDeviceMappings": [{"DeviceName": d, "Ebs": {"VolumeId": v, "Status": statuses.get(d, "attached")}} for d, v in devices],
    }


VOLUMES = {
    "vol-root": {"VolumeId": "vol-root", "Size": 8, "VolumeType": "gp3", "Iops": 3000, "Throughput": 125, "Encrypted": False},
    "vol-data": {"VolumeId": "vol-data", "Size": 30, "VolumeType": "io2", "Iops": 5000, "Throughput": 500, "Encrypted": True, "KmsKeyId": "arn:key/1"},
}


def planned(devices=None):
    rb = Rollback({"instance_id": IID, "account_id": "123456789012", "region": "us-east-1"})
    rb.devices, rb.uncovered = volume_plan(image(), SNAPS, instance(), VOLUMES)
    if devices is not None:
        rb.devices = [d for d in rb.devices if d["device"] in devices]
    return rb


def obs(inst=None, volumes=(), tasks=()):
    return {"instance": inst if inst is not None else instance(), "volumes": {v["VolumeId"]: v for v in volumes}, "tasks": list(tasks)}


def restored(device="/dev/sdf", state="available", vid="vol-new", attachments=()):
    return {
        "VolumeId": vid,
        "State": state,
        "Attachments": list(attachments),
        "Tags": tags(**{rb_rules.ROLLBACK_RUN: RUN, rb_rules.RESTORED_BY: RUN, _tags.INSTANCE_ID: IID, rb_rules.DEVICE: device}),
    }


def original(vid, device, replaced=False, attachments=()):
    t = {rb_rules.ROLLBACK_RUN: RUN, rb_rules.ORIGINAL_OF: RUN, _tags.INSTANCE_ID: IID, rb_rules.DEVICE: device}
    if replaced:
        t[rb_rules.REPLACED_BY] = RUN
    return {"VolumeId": vid, "State": "available", "Attachments": list(attachments), "Tags": tags(**t)}


def task(state, tid="replacevol-1"):
    return {"ReplaceRootVolumeTaskId": tid, "TaskState": state, "Tags": tags(**{rb_rules.ROLLBACK_RUN: RUN})}


def kinds(actions):
    return [a[0] for a in actions]


# -- gate -----------------------------------------------------------------------------------------------


def test_gate_accepts_a_verified_available_ami_with_completed_snapshots():
    assert gate(image(), SNAPS, IID, RUN, "/dev/xvda") == ""


@pytest.mark.parametrize(
    "img, snaps, expected",
    [
        (None, SNAPS, "no AMI of run run-1 for this instance"),
        (image(run="run-0"), SNAPS, "is not the backup of"),
        (image(instance="i-other"), SNAPS, "is not the backup of"),
        (image(state="pending"), SNAPS, "is pending, not available"),
        (image(verified=False), SNAPS, "was never verified"),
        (image(), dict(SNAPS, **{"snap-data": {"State": "pending"}}), "snapshot snap-data of /dev/sdf is pending, not completed"),
        (image(), {"snap-root": SNAPS["snap-root"]}, "snapshot snap-data of /dev/sdf in AMI ami-1 not found"),
        (image(devices=(("/dev/sdf", "snap-data"),)), SNAPS, "has no snapshot of the root device /dev/xvda"),
    ],
)
def test_gate_refuses_with_the_reason(img, snaps, expected):
    assert expected in gate(img, snaps, IID, RUN, "/dev/xvda")


# -- volume plan ------------------------------------------------------------------------------------------


def test_volume_plan_takes_the_current_volumes_settings_and_the_larger_size():
    devices, uncovered = volume_plan(image(), SNAPS, instance(), VOLUMES)
    root, data = devices
    assert root["root"] and root["current_volume_id"] == "vol-root" and root["snapshot_id"] == "snap-root"
    assert (root["volume_type"], root["iops"], root["throughput"], root["encrypted"], root["kms_key_id"]) == ("gp3", 3000, 125, False, None)
    assert not data["root"] and data["size"] == 30  # grown after the backup: keeps its size
    assert (data["volume_type"], data["iops"], data["throughput"], data["encrypted"], data["kms_key_id"]) == ("io2", 5000, None, True, "arn:key/1")
    assert uncovered == []


def test_volume_plan_reports_volumes_the_ami_does_not_cover():
    inst = instance(devices=(("/dev/xvda", "vol-root"), ("/dev/sdf", "vol-data"), ("/dev/sdg", "vol-later")))
    _devices, uncovered = volume_plan(image(), SNAPS, inst, VOLUMES)
    assert uncovered == [{"device": "/dev/sdg", "volume_id": "vol-later"}]


def test_volume_plan_never_smaller_than_the_snapshot():
    small = dict(VOLUMES, **{"vol-data": dict(VOLUMES["vol-data"], Size=10)})
    assert volume_plan(image(), SNAPS, instance(), small)[0][1]["size"] == 20


def test_plan_text_names_every_volume_and_the_stop():
    rb = planned()
    text = describe_plan("ami-1", rb.devices, [{"device": "/dev/sdg", "volume_id": "vol-later"}])
    assert text.startswith("would roll back to ami-1: /dev/xvda vol-root <- snap-root (8 GiB gp3, not encrypted, root volume by CreateReplaceRootVolumeTask)")
    assert "/dev/sdf vol-data <- snap-data (30 GiB io2, encrypted with arn:key/1, CreateVolume + swap)" in text
    assert "stopped and started" in text and "left attached (not in the AMI): /dev/sdg vol-later" in text
    assert "stopped" not in describe_plan("ami-1", planned(devices=["/dev/xvda"]).devices, [])


# -- order ------------------------------------------------------------------------------------------------


def test_data_volumes_are_restored_before_anything_touches_the_instance():
    assert decide(planned(), RUN, obs()) == [("create_volume", "/dev/sdf", 0)]


def test_root_task_waits_for_the_restored_volumes_and_marks_the_old_root_first():
    rb = planned()
    assert kinds(decide(rb, RUN, obs(volumes=[restored(state="creating")]))) == ["wait"]
    assert decide(rb, RUN, obs(volumes=[restored()])) == [("mark_old", [("vol-root", "/dev/xvda")]), ("root_task", 0)]


def test_swap_order_mark_stop_detach_attach_start():
    rb = planned()
    done = task("succeeded")
    inst = instance(devices=(("/dev/xvda", "vol-root2"), ("/dev/sdf", "vol-data")))
    vols = [restored(), original("vol-root", "/dev/xvda")]
    assert decide(rb, RUN, obs(inst, vols, [done])) == [("mark_old", [("vol-data", "/dev/sdf")]), ("stop",)]
    vols.append(original("vol-data", "/dev/sdf", attachments=[{"State": "attached"}]))
    assert kinds(decide(rb, RUN, obs(dict(inst, State={"Name": "stopping"}), vols, [done]))) == ["wait"]
    stopped = dict(inst, State={"Name": "stopped"})
    assert decide(rb, RUN, obs(stopped, vols, [done])) == [("detach", "vol-data", "/dev/sdf")]
    vols[-1] = original("vol-data", "/dev/sdf", attachments=[{"State": "detaching"}])
    empty = dict(stopped, BlockDeviceMappings=stopped["BlockDeviceMappings"][:1])
    assert kinds(decide(rb, RUN, obs(empty, vols, [done]))) == ["wait"]
    vols[-1] = original("vol-data", "/dev/sdf")
    assert decide(rb, RUN, obs(empty, vols, [done])) == [("attach", "vol-new", "/dev/sdf")]
    swapped = instance("stopped", devices=(("/dev/xvda", "vol-root2"), ("/dev/sdf", "vol-new")), statuses={"/dev/sdf": "attaching"})
    assert kinds(decide(rb, RUN, obs(swapped, vols, [done]))) == ["wait"]
    swapped = instance("stopped", devices=(("/dev/xvda", "vol-root2"), ("/dev/sdf", "vol-new")))
    assert decide(rb, RUN, obs(swapped, vols, [done])) == [("mark_replaced", [("vol-data", "/dev/sdf"), ("vol-root", "/dev/xvda")]), ("start",)]


def test_no_stop_without_data_volumes():
    rb = planned(devices=["/dev/xvda"])
    inst = instance(devices=(("/dev/xvda", "vol-root2"),))
    assert decide(rb, RUN, obs(inst, [original("vol-root", "/dev/xvda")], [task("succeeded")])) == [("mark_replaced", [("vol-root", "/dev/xvda")]), ("done",)]


def test_a_stopped_instance_is_not_started_for_the_root_task():
    actions = decide(planned(devices=["/dev/xvda"]), RUN, obs(instance("stopped")))
    assert kinds(actions) == ["fail"] and "needs a running instance" in actions[0][1]


# -- idempotence ------------------------------------------------------------------------------------------


def test_an_instance_already_rolled_back_needs_nothing():
    rb = planned()
    inst = instance(devices=(("/dev/xvda", "vol-root2"), ("/dev/sdf", "vol-new")))
    vols = [restored(attachments=[{"State": "attached"}]), original("vol-root", "/dev/xvda", True), original("vol-data", "/dev/sdf", True)]
    assert decide(rb, RUN, obs(inst, vols, [task("succeeded")])) == [("done",)]
    assert rb.old_by_device == {"/dev/xvda": "vol-root", "/dev/sdf": "vol-data"} and rb.new_by_device == {"/dev/xvda": "vol-root2", "/dev/sdf": "vol-new"}


def test_a_running_task_is_waited_for_never_started_again():
    rb = planned()
    for state in ("pending", "in-progress", "failing"):
        assert kinds(decide(rb, RUN, obs(volumes=[restored()], tasks=[task(state)]))) == ["wait"]


def test_a_task_failed_in_this_call_fails_the_instance_one_failed_before_is_retried_with_a_new_token():
    rb = planned()
    assert decide(rb, RUN, obs(volumes=[restored(), original("vol-root", "/dev/xvda")], tasks=[task("failed")])) == [("root_task", 1)]
    rb.tasks_started.add("replacevol-1")
    actions = decide(rb, RUN, obs(volumes=[restored()], tasks=[task("failed")]))
    assert kinds(actions) == ["fail"] and "original root volume is still attached" in actions[0][1]


def test_a_volume_made_in_this_call_in_error_fails_one_from_before_is_made_again():
    rb = planned()
    assert decide(rb, RUN, obs(volumes=[restored(state="error", vid="vol-bad")])) == [("create_volume", "/dev/sdf", 1)]
    rb.created["/dev/sdf"] = "vol-bad"
    actions = decide(rb, RUN, obs(volumes=[restored(state="error", vid="vol-bad")]))
    assert kinds(actions) == ["fail"] and "the instance was not touched" in actions[0][1]


def test_a_volume_just_made_but_not_yet_visible_is_waited_for():
    rb = planned()
    rb.created["/dev/sdf"] = "vol-new"
    assert kinds(decide(rb, RUN, obs())) == ["wait"]


def test_tasks_of_another_run_are_not_ours():
    other = dict(task("succeeded"), Tags=tags(**{rb_rules.ROLLBACK_RUN: "run-0"}))
    assert kinds(decide(planned(), RUN, obs(volumes=[restored(), original("vol-root", "/dev/xvda")], tasks=[other]))) == ["root_task"]


def test_start_failure_is_reported_with_the_state_reason():
    rb = planned()
    rb.start_requested = True
    inst = dict(instance("stopped", devices=(("/dev/xvda", "vol-root2"), ("/dev/sdf", "vol-new"))), StateReason={"Message": "Server.InternalError"})
    vols = [restored(), original("vol-root", "/dev/xvda", True), original("vol-data", "/dev/sdf", True)]
    actions = decide(rb, RUN, obs(inst, vols, [task("succeeded")]))
    assert kinds(actions) == ["fail"] and "did not start" in actions[0][1] and "Server.InternalError" in actions[0][1]


def test_client_tokens_are_stable_distinct_and_short():
    one = client_token("root", RUN, IID)
    assert one == client_token("root", RUN, IID) and len(one) <= 64
    assert len({one, client_token("root", RUN, IID, attempt=1), client_token("root", "run-2", IID), client_token("volume", RUN, IID, "/dev/sdf")}) == 4


# -- the report -------------------------------------------------------------------------------------------


def test_report_columns_end_with_the_rollback_and_count_it(tmp_path):
    from ansible_collections.cms.patching.plugins.module_utils._report import COLUMNS, RunReport, summary_line

    assert COLUMNS[-2:] == ("rollback_status", "rollback_volumes")
    report = RunReport()
    report.set_run("demo", RUN)
    report.add_discovery([{"instance_id": IID, "account_id": "1", "region": "r", "name": "web-01", "target": True}, {"instance_id": "i-2", "target": True}])
    assert report.rows[IID]["rollback_status"] == "not_run"
    line = summary_line(report.summary())
    assert "rollback" not in line  # a normal run's line is unchanged
    report.add_rollback(
        [
            {"instance_id": IID, "rollback_status": "rolled_back", "rollback_volumes_text": "/dev/xvda: vol-a -> vol-b", "error": ""},
            {"instance_id": "i-2", "rollback_status": "skipped", "error": "AMI ami-1 was never verified"},
        ]
    )
    assert report.rows[IID]["rollback_volumes"] == "/dev/xvda: vol-a -> vol-b" and report.rows[IID]["error"] == ""
    assert report.rows["i-2"]["error"] == "rollback skipped: AMI ami-1 was never verified"
    summary = report.summary()
    assert summary["rollback"] == {"rolled_back": 1, "failed": 0, "skipped": 1, "not_run": 0}
    assert summary_line(summary).endswith("; rollback: 1 rolled_back, 1 skipped")


def test_a_rollback_run_keeps_the_earlier_rows_of_its_run(tmp_path):
    from ansible_collections.cms.patching.plugins.module_utils._report import RunReport

    earlier = RunReport()
    earlier.set_run("demo", RUN)
    earlier.add_discovery([{"instance_id": IID, "name": "web-01", "target": True}, {"instance_id": "i-2", "name": "web-02", "target": True}])
    earlier.add_backup([{"instance_id": IID, "backup_status": "verified", "ami_id": "ami-1"}, {"instance_id": "i-2", "backup_status": "verified"}])
    earlier.add_patch([{"instance_id": IID, "patch_status": "failed", "error": "Failed: 2 patches"}, {"instance_id": "i-2", "patch_status": "success"}])
    path = tmp_path / "demo-run-1.csv"
    earlier.write(str(path))
    started = earlier.rows[IID]["started_at"]

    later = RunReport()
    later.set_run("demo", RUN)
    later.add_discovery([{"instance_id": IID, "name": "web-01", "target": True, "state": "running"}])
    later.add_rollback([{"instance_id": IID, "rollback_status": "failed", "error": "attaching vol-n failed"}])
    later.keep_rows_of(str(path))
    row = later.rows[IID]
    assert (row["backup_status"], row["ami_id"], row["patch_status"], row["rollback_status"]) == ("verified", "ami-1", "failed", "failed")
    assert row["error"] == "Failed: 2 patches; rollback failed: attaching vol-n failed"
    assert row["started_at"] == started and row["instance_state"] == "running"
    assert later.rows["i-2"]["patch_status"] == "success" and later.rows["i-2"]["rollback_status"] == "not_run"


def test_a_device_with_nothing_attached_takes_the_ami_mapping():
    img = image()
    img["BlockDeviceMappings"][1]["Ebs"].update(VolumeType="io1", Iops=4000)
    devices, _uncovered = volume_plan(img, SNAPS, instance(devices=(("/dev/xvda", "vol-root"),)), VOLUMES)
    data = devices[1]
    assert (data["current_volume_id"], data["volume_type"], data["iops"], data["size"]) == ("", "io1", 4000, 20)
