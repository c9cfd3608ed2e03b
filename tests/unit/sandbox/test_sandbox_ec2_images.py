"""CreateImage: pending then available, one snapshot per volume, tags, faults, deregistration."""

from __future__ import annotations

import datetime

import pytest
from botocore.exceptions import ClientError

AMI_PENDING = 3.0
SNAPSHOT_PENDING = 4.0


def _image(ec2, image_id):
    return ec2.describe_images(ImageIds=[image_id])["Images"][0]


def _snapshots(ec2, image):
    ids = [mapping["Ebs"]["SnapshotId"] for mapping in image["BlockDeviceMappings"]]
    return {snapshot["SnapshotId"]: snapshot for snapshot in ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]}


def test_image_is_pending_until_ami_pending_seconds_pass(sandbox, ec2, launch):
    image_id = ec2.create_image(InstanceId=launch(1)[0], Name="backup-1")["ImageId"]
    assert _image(ec2, image_id)["State"] == "pending"
    sandbox.state.clock.advance(AMI_PENDING)
    assert _image(ec2, image_id)["State"] == "available"


def test_image_has_one_snapshot_per_attached_volume(ec2, launch):
    instance_id = launch(1, data_volume=True)[0]
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    volumes = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]}
    image = _image(ec2, ec2.create_image(InstanceId=instance_id, Name="backup-2")["ImageId"])
    mappings = {m["DeviceName"]: m["Ebs"] for m in image["BlockDeviceMappings"]}
    assert {device: (ebs["VolumeSize"], ebs["VolumeType"]) for device, ebs in mappings.items()} == {"/dev/xvda": (8, "gp3"), "/dev/sdf": (20, "gp2")}
    snapshots = _snapshots(ec2, image)
    assert {device: snapshots[ebs["SnapshotId"]]["VolumeId"] for device, ebs in mappings.items()} == volumes


def test_snapshot_description_names_the_instance_and_image(ec2, launch):
    instance_id = launch(1)[0]
    image = _image(ec2, ec2.create_image(InstanceId=instance_id, Name="backup-3")["ImageId"])
    (snapshot,) = _snapshots(ec2, image).values()
    assert snapshot["Description"] == f"Created by CreateImage({instance_id}) for {image['ImageId']}"


def test_snapshots_are_pending_with_rising_progress_then_completed(sandbox, ec2, launch):
    image = _image(ec2, ec2.create_image(InstanceId=launch(1)[0], Name="backup-4")["ImageId"])
    sandbox.state.clock.advance(SNAPSHOT_PENDING / 2)
    (half,) = _snapshots(ec2, image).values()
    sandbox.state.clock.advance(SNAPSHOT_PENDING / 2)
    (done,) = _snapshots(ec2, image).values()
    assert (half["State"], done["State"], done["Progress"]) == ("pending", "completed", "100%")
    assert 0 < int(half["Progress"].rstrip("%")) < 100


def test_tag_specifications_tag_the_image_and_every_snapshot(ec2, launch):
    image_id = ec2.create_image(
        InstanceId=launch(1, data_volume=True)[0],
        Name="backup-5",
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "run", "Value": "r1"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "run", "Value": "r1-snap"}]},
        ],
    )["ImageId"]
    image = _image(ec2, image_id)
    assert image["Tags"] == [{"Key": "run", "Value": "r1"}]
    assert [snapshot["Tags"] for snapshot in _snapshots(ec2, image).values()] == [[{"Key": "run", "Value": "r1-snap"}]] * 2


def test_other_tag_resource_types_are_rejected(ec2, launch):
    with pytest.raises(ClientError) as raised:
        ec2.create_image(InstanceId=launch(1)[0], Name="backup-6", TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "a", "Value": "b"}]}])
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_stopped_instances_can_be_imaged_with_no_reboot(ec2, launch):
    instance_id = launch(1)[0]
    ec2.stop_instances(InstanceIds=[instance_id])
    assert ec2.create_image(InstanceId=instance_id, Name="backup-7", NoReboot=True)["ImageId"].startswith("ami-")


def test_dry_run_creates_nothing(ec2, launch):
    instance_id = launch(1)[0]
    with pytest.raises(ClientError) as raised:
        ec2.create_image(InstanceId=instance_id, Name="backup-8", DryRun=True)
    assert raised.value.response["Error"]["Code"] == "DryRunOperation"
    assert ec2.describe_images(Owners=["self"])["Images"] == []


def test_a_second_image_with_the_same_name_is_rejected(ec2, launch):
    instance_id = launch(1)[0]
    ec2.create_image(InstanceId=instance_id, Name="backup-9")
    with pytest.raises(ClientError) as raised:
        ec2.create_image(InstanceId=instance_id, Name="backup-9")
    assert raised.value.response["Error"]["Code"] == "InvalidAMIName.Duplicate"


def test_ami_fail_ends_the_image_failed_with_a_state_reason(sandbox, ec2, launch):
    instance_id = launch(1)[0]
    sandbox.state.faults.add("ami_fail", instance_id=instance_id, code="Client.InternalError", message="boom")
    image_id = ec2.create_image(InstanceId=instance_id, Name="backup-10")["ImageId"]
    sandbox.state.clock.advance(AMI_PENDING)
    image = _image(ec2, image_id)
    assert (image["State"], image["StateReason"]) == ("failed", {"Code": "Client.InternalError", "Message": "boom"})


def test_ami_fail_with_count_fails_only_that_many_images(sandbox, ec2, launch):
    instance_id = launch(1)[0]
    sandbox.state.faults.add("ami_fail", instance_id=instance_id, count=1)
    first = ec2.create_image(InstanceId=instance_id, Name="backup-11a")["ImageId"]
    second = ec2.create_image(InstanceId=instance_id, Name="backup-11b")["ImageId"]
    sandbox.state.clock.advance(AMI_PENDING)
    assert (_image(ec2, first)["State"], _image(ec2, second)["State"]) == ("failed", "available")


def test_snapshot_error_ends_one_snapshot_in_error(sandbox, ec2, launch):
    instance_id = launch(1, data_volume=True)[0]
    sandbox.state.faults.add("snapshot_error", instance_id=instance_id)
    image = _image(ec2, ec2.create_image(InstanceId=instance_id, Name="backup-12")["ImageId"])
    sandbox.state.clock.advance(SNAPSHOT_PENDING)
    states = {m["DeviceName"]: _snapshots(ec2, image)[m["Ebs"]["SnapshotId"]]["State"] for m in image["BlockDeviceMappings"]}
    assert states == {"/dev/xvda": "completed", "/dev/sdf": "error"}


def test_ami_stuck_stays_pending(sandbox, ec2, launch):
    instance_id = launch(1)[0]
    sandbox.state.faults.add("ami_stuck", instance_id=instance_id)
    image_id = ec2.create_image(InstanceId=instance_id, Name="backup-13")["ImageId"]
    sandbox.state.clock.advance(3600)
    assert _image(ec2, image_id)["State"] == "pending"


def test_image_state_filter_sees_the_lazy_state(sandbox, ec2, launch):
    image_id = ec2.create_image(InstanceId=launch(1)[0], Name="backup-14")["ImageId"]
    sandbox.state.clock.advance(AMI_PENDING)
    available = ec2.describe_images(Owners=["self"], Filters=[{"Name": "state", "Values": ["available"]}])["Images"]
    assert [image["ImageId"] for image in available] == [image_id]


def test_deleting_a_snapshot_of_a_registered_image_is_refused(ec2, launch):
    image = _image(ec2, ec2.create_image(InstanceId=launch(1)[0], Name="backup-15")["ImageId"])
    with pytest.raises(ClientError) as raised:
        ec2.delete_snapshot(SnapshotId=image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"])
    assert raised.value.response["Error"]["Code"] == "InvalidSnapshot.InUse"


def test_deregistering_keeps_the_snapshots_which_can_then_be_deleted(ec2, launch):
    image = _image(ec2, ec2.create_image(InstanceId=launch(1)[0], Name="backup-16")["ImageId"])
    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    ec2.deregister_image(ImageId=image["ImageId"])
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["SnapshotId"] == snapshot_id
    ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] == []


def test_owner_ids_self_lists_only_the_account_snapshots(ec2, launch):
    image = _image(ec2, ec2.create_image(InstanceId=launch(1)[0], Name="backup-17")["ImageId"])
    own = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert [snapshot["SnapshotId"] for snapshot in own] == [image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]]


def test_describe_snapshots_pages_with_max_results(ec2, launch):
    for index, instance_id in enumerate(launch(3, data_volume=True)):
        ec2.create_image(InstanceId=instance_id, Name=f"paged-{index}")
    pages = list(ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], PaginationConfig={"PageSize": 5}))
    assert [len(page["Snapshots"]) for page in pages] == [5, 1]


def test_image_waiter_returns_once_available(sandbox, ec2, launch):
    sandbox.state.update_settings(ami_pending_seconds=0.05)
    image_id = ec2.create_image(InstanceId=launch(1)[0], Name="backup-18")["ImageId"]
    ec2.get_waiter("image_available").wait(ImageIds=[image_id], WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    assert _image(ec2, image_id)["State"] == "available"


def test_deregister_with_delete_associated_snapshots_deletes_them(ec2, launch):
    image = _image(ec2, ec2.create_image(InstanceId=launch(1, data_volume=True)[0], Name="backup-19")["ImageId"])
    result = ec2.deregister_image(ImageId=image["ImageId"], DeleteAssociatedSnapshots=True)
    assert sorted(item["ReturnCode"] for item in result["DeleteSnapshotResults"]) == ["success", "success"]
    assert ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] == []


def test_image_without_no_reboot_reboots_a_running_instance(sandbox, ec2, launch):
    rebooted, kept = launch(2)
    ec2.create_image(InstanceId=rebooted, Name="backup-20")
    ec2.create_image(InstanceId=kept, Name="backup-21", NoReboot=True)
    assert [reboot["instance_id"] for reboot in sandbox.state.describe()["reboots"]] == [rebooted]


def test_image_creation_date_follows_sandbox_time(sandbox, ec2, launch):
    sandbox.state.clock.advance(86400 * 30)
    image = _image(ec2, ec2.create_image(InstanceId=launch(1)[0], Name="backup-22")["ImageId"])
    created = datetime.datetime.fromisoformat(image["CreationDate"].replace("Z", "+00:00")).timestamp()
    assert abs(created - sandbox.state.now()) < 60
