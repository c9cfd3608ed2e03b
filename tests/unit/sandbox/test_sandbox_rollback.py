"""Root volume replacement, volumes and instances that take time, the rollback_fail fault, patch state restored."""

from __future__ import annotations

import botocore.exceptions
import pytest

SCAN = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Scan"]}}
INSTALL = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Install"], "RebootOption": ["RebootIfNeeded"]}}
ENOUGH = 10  # longer than any default duration here


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def mappings(ec2, instance_id):
    inst = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return inst, {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]}


def backed_up(sandbox, ec2, instance_id, name="backup-1"):
    image_id = ec2.create_image(InstanceId=instance_id, Name=name, NoReboot=True)["ImageId"]
    sandbox.state.clock.advance(ENOUGH)
    return image_id


def task_state(ec2, task_id):
    return ec2.describe_replace_root_volume_tasks(ReplaceRootVolumeTaskIds=[task_id])["ReplaceRootVolumeTasks"][0]


@pytest.fixture
def instance(launch_managed):
    return launch_managed(1, data_volume=True)[0]


def test_root_replacement_from_an_image_goes_pending_in_progress_succeeded(sandbox, ec2, ssm, instance):
    image_id = backed_up(sandbox, ec2, instance)
    _inst, before = mappings(ec2, instance)
    tags = [{"ResourceType": "replace-root-volume-task", "Tags": [{"Key": "run", "Value": "r1"}]}]
    task = ec2.create_replace_root_volume_task(InstanceId=instance, ImageId=image_id, ClientToken="t-1", TagSpecifications=tags)["ReplaceRootVolumeTask"]
    assert task["TaskState"] == "pending" and task["ReplaceRootVolumeTaskId"].startswith("replacevol-") and task["ImageId"] == image_id
    assert task["Tags"] == [{"Key": "run", "Value": "r1"}] and "CompleteTime" not in task
    status = ec2.describe_instance_status(InstanceIds=[instance])["InstanceStatuses"][0]
    assert status["InstanceStatus"]["Status"] == "initializing"
    assert ssm.describe_instance_information()["InstanceInformationList"][0]["PingStatus"] == "ConnectionLost"
    assert ssm.describe_instance_properties()["InstanceProperties"][0]["PingStatus"] == "ConnectionLost"  # the same registry
    sandbox.state.clock.advance(2)
    assert task_state(ec2, task["ReplaceRootVolumeTaskId"])["TaskState"] == "in-progress"
    sandbox.state.clock.advance(2)
    done = task_state(ec2, task["ReplaceRootVolumeTaskId"])
    assert done["TaskState"] == "succeeded" and done["CompleteTime"]
    inst, after = mappings(ec2, instance)
    assert inst["State"]["Name"] == "running" and after["/dev/sdf"] == before["/dev/sdf"]
    assert after["/dev/xvda"] != before["/dev/xvda"]
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    root_snapshot = next(m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if m["DeviceName"] == "/dev/xvda")
    volumes = {v["VolumeId"]: v for v in ec2.describe_volumes()["Volumes"]}
    assert volumes[after["/dev/xvda"]]["SnapshotId"] == root_snapshot and volumes[after["/dev/xvda"]]["State"] == "in-use"
    assert volumes[before["/dev/xvda"]]["State"] == "available"  # kept: DeleteReplacedRootVolume was not asked
    assert ec2.describe_instance_status(InstanceIds=[instance])["InstanceStatuses"][0]["InstanceStatus"]["Status"] == "ok"
    assert ssm.describe_instance_information()["InstanceInformationList"][0]["PingStatus"] == "Online"
    assert ssm.describe_instance_properties()["InstanceProperties"][0]["PingStatus"] == "Online"


def test_client_token_answers_the_same_task_and_a_second_task_is_refused(sandbox, ec2, instance):
    image_id = backed_up(sandbox, ec2, instance)
    first = ec2.create_replace_root_volume_task(InstanceId=instance, ImageId=image_id, ClientToken="t-1")["ReplaceRootVolumeTask"]
    again = ec2.create_replace_root_volume_task(InstanceId=instance, ImageId=image_id, ClientToken="t-1")["ReplaceRootVolumeTask"]
    assert again["ReplaceRootVolumeTaskId"] == first["ReplaceRootVolumeTaskId"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.create_replace_root_volume_task(InstanceId=instance, ImageId=image_id, ClientToken="t-2")
    assert code(excinfo) == "IncorrectState"
    assert len(ec2.describe_replace_root_volume_tasks(Filters=[{"Name": "instance-id", "Values": [instance]}])["ReplaceRootVolumeTasks"]) == 1


def test_delete_replaced_root_volume_deletes_the_old_root(sandbox, ec2, instance):
    image_id = backed_up(sandbox, ec2, instance)
    _inst, before = mappings(ec2, instance)
    ec2.create_replace_root_volume_task(InstanceId=instance, ImageId=image_id, DeleteReplacedRootVolume=True)
    sandbox.state.clock.advance(ENOUGH)
    ec2.describe_replace_root_volume_tasks()
    assert before["/dev/xvda"] not in {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}


def test_replacement_needs_a_running_instance_and_an_image(sandbox, ec2, instance):
    image_id = backed_up(sandbox, ec2, instance)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.create_replace_root_volume_task(InstanceId=instance, ImageId="ami-12345678901234567")
    assert code(excinfo) == "InvalidAMIID.NotFound"
    ec2.stop_instances(InstanceIds=[instance])
    sandbox.state.clock.advance(ENOUGH)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.create_replace_root_volume_task(InstanceId=instance, ImageId=image_id)
    assert code(excinfo) == "IncorrectInstanceState"


def test_root_replace_fault_fails_the_task_and_keeps_the_root(sandbox, ec2, instance):
    image_id = backed_up(sandbox, ec2, instance)
    _inst, before = mappings(ec2, instance)
    sandbox.state.faults.add("rollback_fail", instance_id=instance, step="root_replace")
    task_id = ec2.create_replace_root_volume_task(InstanceId=instance, ImageId=image_id)["ReplaceRootVolumeTask"]["ReplaceRootVolumeTaskId"]
    sandbox.state.clock.advance(3)
    assert task_state(ec2, task_id)["TaskState"] == "failing"
    sandbox.state.clock.advance(ENOUGH)
    assert task_state(ec2, task_id)["TaskState"] == "failed"
    assert mappings(ec2, instance)[1] == before


def test_volume_from_a_snapshot_is_creating_then_available_or_error(sandbox, ec2, instance):
    image_id = backed_up(sandbox, ec2, instance)
    mappings = ec2.describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"]
    snapshot = next(m["Ebs"]["SnapshotId"] for m in mappings if m["DeviceName"] == "/dev/sdf")
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=snapshot, VolumeType="gp3", ClientToken="v-1")
    assert volume["State"] == "creating" and volume["Size"] == 20
    assert ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=snapshot, ClientToken="v-1")["VolumeId"] == volume["VolumeId"]
    sandbox.state.clock.advance(ENOUGH)
    assert ec2.describe_volumes(VolumeIds=[volume["VolumeId"]])["Volumes"][0]["State"] == "available"
    sandbox.state.faults.add("rollback_fail", instance_id=instance, step="volume_create", count=1)
    broken = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=snapshot)["VolumeId"]
    sandbox.state.clock.advance(ENOUGH)
    assert ec2.describe_volumes(VolumeIds=[broken])["Volumes"][0]["State"] == "error"


def test_attach_and_detach_take_time_and_are_refused_as_ec2_refuses(sandbox, ec2, instance):
    inst, before = mappings(ec2, instance)
    zone = inst["Placement"]["AvailabilityZone"]
    fresh = ec2.create_volume(AvailabilityZone=zone, Size=5)["VolumeId"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.attach_volume(VolumeId=fresh, InstanceId=instance, Device="/dev/sdg")
    assert code(excinfo) == "IncorrectState"  # still creating
    sandbox.state.clock.advance(ENOUGH)
    other_zone = ec2.create_volume(AvailabilityZone="us-east-1b" if zone != "us-east-1b" else "us-east-1c", Size=5)["VolumeId"]
    sandbox.state.clock.advance(ENOUGH)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.attach_volume(VolumeId=other_zone, InstanceId=instance, Device="/dev/sdg")
    assert code(excinfo) == "InvalidVolume.ZoneMismatch"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.attach_volume(VolumeId=fresh, InstanceId=instance, Device="/dev/sdf")
    assert code(excinfo) == "InvalidParameterValue"  # the device is taken
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.detach_volume(VolumeId=before["/dev/xvda"])
    assert code(excinfo) == "IncorrectState"  # the root volume of a running instance
    assert ec2.detach_volume(VolumeId=before["/dev/sdf"])["State"] == "detaching"
    assert ec2.describe_volumes(VolumeIds=[before["/dev/sdf"]])["Volumes"][0]["Attachments"][0]["State"] == "detaching"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.attach_volume(VolumeId=fresh, InstanceId=instance, Device="/dev/sdf")
    assert code(excinfo) == "InvalidParameterValue"  # still detaching
    sandbox.state.clock.advance(ENOUGH)
    assert ec2.describe_volumes(VolumeIds=[before["/dev/sdf"]])["Volumes"][0]["State"] == "available"
    assert ec2.attach_volume(VolumeId=fresh, InstanceId=instance, Device="/dev/sdf")["State"] == "attaching"
    assert ec2.describe_volumes(VolumeIds=[fresh])["Volumes"][0]["Attachments"][0]["State"] == "attaching"
    sandbox.state.clock.advance(ENOUGH)
    assert ec2.describe_volumes(VolumeIds=[fresh])["Volumes"][0]["Attachments"][0]["State"] == "attached"
    sandbox.state.faults.add("rollback_fail", instance_id=instance, step="attach", count=1)
    ec2.detach_volume(VolumeId=fresh)
    sandbox.state.clock.advance(ENOUGH)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.attach_volume(VolumeId=before["/dev/sdf"], InstanceId=instance, Device="/dev/sdf")
    assert code(excinfo) == "IncorrectState"
    assert ec2.attach_volume(VolumeId=before["/dev/sdf"], InstanceId=instance, Device="/dev/sdf")["State"] == "attaching"  # count 1: used up


def test_stop_and_start_take_time_and_a_start_fault_leaves_it_stopped(sandbox, ec2, instance):
    assert ec2.stop_instances(InstanceIds=[instance])["StoppingInstances"][0]["CurrentState"]["Name"] == "stopping"
    assert mappings(ec2, instance)[0]["State"]["Name"] == "stopping"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.start_instances(InstanceIds=[instance])
    assert code(excinfo) == "IncorrectInstanceState"
    sandbox.state.clock.advance(ENOUGH)
    assert mappings(ec2, instance)[0]["State"]["Name"] == "stopped"
    sandbox.state.faults.add("rollback_fail", instance_id=instance, step="start", count=1)
    assert ec2.start_instances(InstanceIds=[instance])["StartingInstances"][0]["CurrentState"]["Name"] == "pending"
    assert mappings(ec2, instance)[0]["State"]["Name"] == "pending"
    sandbox.state.clock.advance(ENOUGH)
    inst = mappings(ec2, instance)[0]
    assert inst["State"]["Name"] == "stopped" and inst["StateReason"]["Code"] == "Server.InternalError"
    ec2.start_instances(InstanceIds=[instance])
    sandbox.state.clock.advance(ENOUGH)
    assert mappings(ec2, instance)[0]["State"]["Name"] == "running"


def test_stop_and_start_repeated_answer_the_state_without_a_second_transition(sandbox, ec2, instance):
    """A repeated StopInstances / StartInstances answers with the transition under way, or with the state reached; it
    starts no new transition (the first one's end stands)."""
    stopping = {"Code": 64, "Name": "stopping"}
    ec2.stop_instances(InstanceIds=[instance])
    sandbox.state.clock.advance(1)
    again = ec2.stop_instances(InstanceIds=[instance])["StoppingInstances"][0]
    assert again["CurrentState"] == stopping and again["PreviousState"] == stopping
    sandbox.state.clock.advance(ENOUGH)
    stopped = ec2.stop_instances(InstanceIds=[instance])["StoppingInstances"][0]
    assert stopped["CurrentState"] == stopped["PreviousState"] == {"Code": 80, "Name": "stopped"}
    assert mappings(ec2, instance)[0]["State"]["Name"] == "stopped"
    ec2.start_instances(InstanceIds=[instance])
    pending = ec2.start_instances(InstanceIds=[instance])["StartingInstances"][0]
    assert pending["CurrentState"] == pending["PreviousState"] == {"Code": 0, "Name": "pending"}
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.stop_instances(InstanceIds=[instance])
    assert code(excinfo) == "IncorrectInstanceState" and "can be stopped" in str(excinfo.value)
    sandbox.state.clock.advance(ENOUGH)
    running = ec2.start_instances(InstanceIds=[instance])["StartingInstances"][0]
    assert running["CurrentState"] == running["PreviousState"] == {"Code": 16, "Name": "running"}


def test_after_a_root_replacement_the_patches_are_missing_again(sandbox, ec2, ssm, instance):
    image_id = backed_up(sandbox, ec2, instance)
    ssm.send_command(InstanceIds=[instance], **INSTALL)
    sandbox.state.clock.advance(ENOUGH)
    installed = ssm.describe_instance_patch_states(InstanceIds=[instance])["InstancePatchStates"][0]
    assert installed["MissingCount"] == 0 and installed["Operation"] == "Install"
    ec2.create_replace_root_volume_task(InstanceId=instance, ImageId=image_id)
    sandbox.state.clock.advance(ENOUGH)
    # SSM shows what the agent reported last: the rollback alone changes no report ...
    assert ssm.describe_instance_patch_states(InstanceIds=[instance])["InstancePatchStates"][0]["MissingCount"] == 0
    ssm.send_command(InstanceIds=[instance], **SCAN)
    sandbox.state.clock.advance(ENOUGH)
    # ... a scan of the restored machine finds the patches missing again, as before the install.
    rescanned = ssm.describe_instance_patch_states(InstanceIds=[instance])["InstancePatchStates"][0]
    assert rescanned["Operation"] == "Scan" and rescanned["MissingCount"] == installed["InstalledCount"] - _baseline(sandbox, instance)


def _baseline(sandbox, instance):
    from sandbox.ssm.patch_catalog import profile

    return len(profile(instance, "Linux").installed)


def test_describe_tasks_rejects_unknown_filters(ec2):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ec2.describe_replace_root_volume_tasks(Filters=[{"Name": "task-state", "Values": ["failed"]}])
    assert code(excinfo) == "InvalidParameterValue"


def test_a_volume_not_made_from_a_snapshot_says_snapshot_id_empty(ec2, instance):
    volumes = ec2.describe_volumes()["Volumes"]
    assert volumes and all(v["SnapshotId"] == "" for v in volumes)


def test_rollback_fail_names_its_step(sandbox, instance):
    with pytest.raises(ValueError, match="rollback_fail step must be one of root_replace, volume_create, attach, start"):
        sandbox.state.faults.add("rollback_fail", instance_id=instance, step="detach")
    assert sandbox.state.faults.add("rollback_fail", instance_id=instance).options == {}
