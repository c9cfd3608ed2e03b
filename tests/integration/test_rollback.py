"""Recovery through the playbook: --tags rollback on the demo (a data-volume instance and a Windows one), --check, resume."""

import boto3
from conftest import ANSIBLE_PLAYBOOK, REPO, calls, write_calls

ROLLBACK_WRITES = ("ec2:CreateReplaceRootVolumeTask", "ec2:CreateVolume", "ec2:StopInstances", "ec2:StartInstances", "ec2:AttachVolume", "ec2:DetachVolume")


def ec2(aws):
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=aws.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")


def backed_up(playbook):
    """A backup run of the demo: its run ID, and the instances' volumes at that moment."""
    run = playbook("--tags", "backup")
    assert run.rc == 2, run.output[-3000:]  # web-03's AMI fails: the demo's injected fault
    rows = run.by_name()
    assert rows["web-01"]["backup_status"] == "verified" and rows["app-win-01"]["backup_status"] == "verified"
    return rows["web-01"]["run_id"], rows


def volumes_of(aws, instance_id):
    inst = ec2(aws).describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return inst["State"]["Name"], {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]}


def test_rollback_of_two_demo_instances_check_first_then_for_real_then_again(aws, playbook):
    run_id, rows = backed_up(playbook)
    web, win = rows["web-01"]["instance_id"], rows["app-win-01"]["instance_id"]
    before = {i: volumes_of(aws, i)[1] for i in (web, win)}
    chosen = ("--tags", "rollback", "-e", "run_id=%s" % run_id, "-e", "rollback_instances=web-01,app-win-01")

    aws.state.calls.reset()
    check = playbook(*chosen, "--check")
    assert check.rc == 0, check.output[-3000:]
    assert write_calls(aws) == {}
    assert "would roll back to" in check.output

    aws.state.calls.reset()
    done = playbook(*chosen)
    assert done.rc == 0, done.output[-3000:]
    report = done.by_name()
    assert report["web-01"]["rollback_status"] == report["app-win-01"]["rollback_status"] == "rolled_back"
    # The rollback adds to the run's CSV: the backup columns of the earlier run are still there.
    assert report["web-01"]["backup_status"] == "verified" and report["web-03"]["backup_status"] == "failed"
    assert report["web-03"]["rollback_status"] == "not_run"
    state, now = volumes_of(aws, web)
    assert state == "running" and set(now) == {"/dev/xvda", "/dev/sdf"} and not set(now.values()) & set(before[web].values())
    for device in now:
        assert "%s: %s -> %s" % (device, before[web][device], now[device]) in report["web-01"]["rollback_volumes"]
    assert volumes_of(aws, win)[1]["/dev/sda1"] != before[win]["/dev/sda1"]
    assert "rollback: 2 rolled_back" in done.output
    assert calls(aws)["ec2:CreateReplaceRootVolumeTask"] == 2 and calls(aws)["ec2:CreateVolume"] == 1

    # Again: recognised as done, nothing written.
    aws.state.calls.reset()
    again = playbook(*chosen)
    assert again.rc == 0, again.output[-3000:]
    assert not {op for op in write_calls(aws) if op in ROLLBACK_WRITES}


def test_rollback_without_a_choice_or_run_is_refused(aws, playbook):
    run_id, _rows = backed_up(playbook)
    aws.state.calls.reset()
    nothing = playbook("--tags", "rollback", "-e", "run_id=%s" % run_id)
    assert nothing.rc != 0 and "Say which instances to roll back" in nothing.output
    no_run = playbook("--tags", "rollback", "-e", "rollback_instances=web-01")
    assert no_run.rc != 0 and "A rollback needs -e run_id" in no_run.output
    unknown = playbook("--tags", "rollback", "-e", "run_id=%s" % run_id, "-e", "rollback_instances=web-99")
    assert unknown.rc != 0 and "Not in landing zone demo: web-99" in unknown.output
    assert not {op for op in write_calls(aws) if op in ROLLBACK_WRITES}


def test_a_failed_rollback_fails_the_host_with_the_reason(aws, playbook):
    run_id, rows = backed_up(playbook)
    aws.state.faults.add("rollback_fail", instance_id=rows["web-01"]["instance_id"], step="attach", count=1)
    run = playbook("--tags", "rollback", "-e", "run_id=%s" % run_id, "-e", "rollback_instances=web-01")
    assert run.rc == 2, run.output[-3000:]
    row = run.by_name()["web-01"]
    assert row["rollback_status"] == "failed" and "attached again" in row["error"]
    assert "was not rolled back" in run.output


def test_demo_rolls_back_its_injected_patch_failure_right_after_the_wave(aws, playbook):
    run = playbook()
    assert run.rc == 2, run.output[-3000:]
    rows = run.by_name()
    pay2 = rows["pay-web-02"]
    # Still failed for the wave's stop rule and the play, and rolled back.
    assert pay2["patch_status"] == "failed" and pay2["rollback_status"] == "rolled_back", pay2
    assert "/dev/xvda: vol-" in pay2["rollback_volumes"]
    assert {r["rollback_status"] for n, r in rows.items() if n != "pay-web-02"} == {"not_run"}
    assert "rollback: 1 rolled_back" in run.output
    assert calls(aws)["ec2:CreateReplaceRootVolumeTask"] == 1 and "ec2:StopInstances" not in calls(aws)


def test_ctrl_c_in_the_middle_of_a_rollback_then_resume_makes_nothing_twice(aws, lz_env, playbook):
    import os
    import signal
    import subprocess
    import time

    run_id, rows = backed_up(playbook)
    web = rows["web-01"]["instance_id"]
    aws.state.update_settings(root_replace_seconds=60)
    args = ["-e", "lz=demo", "-e", "run_id=%s" % run_id, "--tags", "rollback", "-e", "rollback_instances=web-01"]
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [ANSIBLE_PLAYBOOK, "site.yml"] + args, cwd=REPO, env=lz_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        tasks = ec2(aws).describe_replace_root_volume_tasks(Filters=[{"Name": "instance-id", "Values": [web]}])["ReplaceRootVolumeTasks"]
        if tasks:
            break
        time.sleep(0.5)
    assert tasks and tasks[0]["TaskState"] in ("pending", "in-progress")
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    aws.state.update_settings(root_replace_seconds=4)
    aws.state.clock.advance(60)

    resumed = playbook(*args[2:])
    assert resumed.rc == 0, resumed.output[-3000:]
    assert resumed.by_name()["web-01"]["rollback_status"] == "rolled_back"
    tasks = ec2(aws).describe_replace_root_volume_tasks(Filters=[{"Name": "instance-id", "Values": [web]}])["ReplaceRootVolumeTasks"]
    assert len(tasks) == 1 and tasks[0]["TaskState"] == "succeeded"
    restored = [v for v in ec2(aws).describe_volumes()["Volumes"] if {"Key": "cms:patching:restored-by-rollback", "Value": run_id} in v.get("Tags", [])]
    assert len(restored) == 1 and restored[0]["State"] == "in-use"
    assert calls(aws)["ec2:CreateReplaceRootVolumeTask"] == 1 and calls(aws)["ec2:CreateVolume"] == 1


def test_limit_chooses_the_instances_with_the_landing_zones_inventory(aws, playbook):
    run_id, rows = backed_up(playbook)
    web = rows["web-01"]["instance_id"]
    aws.state.calls.reset()
    run = playbook("-i", "inventories/demo", "--limit", web, "--tags", "rollback", "-e", "run_id=%s" % run_id, "--check")
    assert run.rc == 0, run.output[-3000:]
    assert write_calls(aws) == {}
    assert "web-01 (%s): skipped would roll back to ami-" % web in run.output
    assert "app-win-01 (" not in run.output
