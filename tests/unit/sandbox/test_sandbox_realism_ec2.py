"""EC2 realism: eventual consistency of new images, InvalidSnapshot.InUse after DeregisterImage, drawn durations."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from sandbox import realism


def _image(ec2, launch, name="ec-1", data_volume=True):
    (instance_id,) = launch(1, data_volume=data_volume)
    return ec2.create_image(InstanceId=instance_id, Name=name, NoReboot=True)["ImageId"]


def _own_images(ec2, **options):
    return ec2.describe_images(Owners=["self"], **options)["Images"]


def _own_snapshots(ec2):
    return ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]


def _code(call):
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"]


# --- eventual consistency -------------------------------------------------------------------------

def test_a_new_image_is_visible_at_once_by_default(ec2, launch):
    image_id = _image(ec2, launch)
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    assert all("SnapshotId" in mapping["Ebs"] for mapping in image["BlockDeviceMappings"])
    assert len(_own_snapshots(ec2)) == 2


def test_a_new_image_and_its_snapshots_are_invisible_at_first(sandbox, ec2, launch):
    sandbox.state.update_settings(describe_visibility_seconds=10)
    image_id = _image(ec2, launch)
    assert _own_images(ec2) == []
    assert _own_snapshots(ec2) == []
    assert _code(lambda: ec2.describe_images(ImageIds=[image_id])) == "InvalidAMIID.NotFound"
    sandbox.state.clock.advance(10)
    assert [image["ImageId"] for image in _own_images(ec2)] == [image_id]
    assert len(_own_snapshots(ec2)) == 2


def test_an_invisible_snapshot_asked_for_by_id_is_not_found(sandbox, ec2, launch):
    sandbox.state.update_settings(describe_visibility_seconds=10)
    _image(ec2, launch)
    (snapshot_id, _other) = sandbox.state.describe()["images"][0]["snapshots"]
    assert _code(lambda: ec2.describe_snapshots(SnapshotIds=[snapshot_id])) == "InvalidSnapshot.NotFound"
    sandbox.state.clock.advance(10)
    assert [s["SnapshotId"] for s in ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]] == [snapshot_id]


def test_an_invisible_image_escapes_tag_filters_too(sandbox, ec2, launch):
    sandbox.state.update_settings(describe_visibility_seconds=10)
    (instance_id,) = launch(1)
    ec2.create_image(InstanceId=instance_id, Name="tagged", NoReboot=True,
                     TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "cms:patching:run-id", "Value": "r1"}]},
                                        {"ResourceType": "snapshot", "Tags": [{"Key": "cms:patching:run-id", "Value": "r1"}]}])
    tag_filter = [{"Name": "tag:cms:patching:run-id", "Values": ["r1"]}]
    assert _own_images(ec2, Filters=tag_filter) == []
    assert ec2.describe_snapshots(OwnerIds=["self"], Filters=tag_filter)["Snapshots"] == []
    sandbox.state.clock.advance(10)
    assert len(_own_images(ec2, Filters=tag_filter)) == 1
    assert len(ec2.describe_snapshots(OwnerIds=["self"], Filters=tag_filter)["Snapshots"]) == 1


def test_a_visible_pending_image_lacks_snapshot_ids_for_a_while(sandbox, ec2, launch):
    sandbox.state.update_settings(describe_visibility_seconds=2, snapshot_id_delay_seconds=5, ami_pending_seconds=60)
    image_id = _image(ec2, launch)
    sandbox.state.clock.advance(2)
    (image,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert image["State"] == "pending"
    assert [sorted(mapping["Ebs"]) for mapping in image["BlockDeviceMappings"]] == [
        ["DeleteOnTermination", "Encrypted", "VolumeSize", "VolumeType"]] * 2
    assert [mapping["DeviceName"] for mapping in image["BlockDeviceMappings"]] == ["/dev/xvda", "/dev/sdf"]
    sandbox.state.clock.advance(5)
    (image,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert all(mapping["Ebs"]["SnapshotId"].startswith("snap-") for mapping in image["BlockDeviceMappings"])


def test_snapshot_ids_show_once_the_image_is_available(sandbox, ec2, launch):
    sandbox.state.update_settings(snapshot_id_delay_seconds=100, ami_pending_seconds=3)
    image_id = _image(ec2, launch)
    assert "SnapshotId" not in ec2.describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]
    sandbox.state.clock.advance(3)
    (image,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert image["State"] == "available" and "SnapshotId" in image["BlockDeviceMappings"][0]["Ebs"]


# --- InvalidSnapshot.InUse after DeregisterImage --------------------------------------------------

def _snapshot_ids(ec2, image_id):
    return [mapping["Ebs"]["SnapshotId"] for mapping in ec2.describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"]]


def test_snapshots_are_free_right_after_deregistering_by_default(sandbox, ec2, launch):
    image_id = _image(ec2, launch)
    snapshot_ids = _snapshot_ids(ec2, image_id)
    ec2.deregister_image(ImageId=image_id)
    for snapshot_id in snapshot_ids:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert _own_snapshots(ec2) == []


def test_snapshots_stay_in_use_for_a_while_after_deregistering(sandbox, ec2, launch):
    sandbox.state.update_settings(snapshot_in_use_seconds=60)
    image_id = _image(ec2, launch)
    snapshot_ids = _snapshot_ids(ec2, image_id)
    ec2.deregister_image(ImageId=image_id)
    with pytest.raises(ClientError) as raised:
        ec2.delete_snapshot(SnapshotId=snapshot_ids[0])
    assert raised.value.response["Error"]["Code"] == "InvalidSnapshot.InUse" and image_id in raised.value.response["Error"]["Message"]
    sandbox.state.clock.advance(60)
    for snapshot_id in snapshot_ids:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert _own_snapshots(ec2) == []


def test_deregistering_with_delete_associated_snapshots_still_deletes_them(sandbox, ec2, launch):
    sandbox.state.update_settings(snapshot_in_use_seconds=60)
    image_id = _image(ec2, launch)
    snapshot_ids = _snapshot_ids(ec2, image_id)
    result = ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    assert sorted(outcome["SnapshotId"] for outcome in result["DeleteSnapshotResults"]) == sorted(snapshot_ids)
    assert _own_snapshots(ec2) == []


# --- durations drawn per resource -----------------------------------------------------------------

def test_durations_are_drawn_per_resource_from_the_ranges(sandbox, ec2, launch):
    sandbox.state.update_settings(ami_pending_seconds=300, ami_pending_max_seconds=1200,
                                  snapshot_pending_seconds=120, snapshot_pending_max_seconds=1800)
    image_ids = [_image(ec2, launch, name=f"d-{n}", data_volume=False) for n in range(6)]
    expected = {image_id: realism.draw(image_id, 300, 1200, "ami") for image_id in image_ids}
    assert all(300 <= seconds <= 1200 for seconds in expected.values()) and len(set(expected.values())) == 6
    first = min(expected.values())
    sandbox.state.clock.advance(first + 0.5)
    states = {image["ImageId"]: image["State"] for image in _own_images(ec2)}
    assert states == {image_id: ("available" if seconds <= first + 0.5 else "pending") for image_id, seconds in expected.items()}
    snapshots = _own_snapshots(ec2)
    assert {s["SnapshotId"]: s["State"] for s in snapshots} == {
        s["SnapshotId"]: ("completed" if realism.draw(s["SnapshotId"], 120, 1800, "snapshot") <= first + 0.5 else "pending") for s in snapshots}


def test_an_image_waits_for_its_slowest_snapshot_when_asked(sandbox, ec2, launch):
    sandbox.state.update_settings(ami_pending_seconds=5, snapshot_pending_seconds=100, image_waits_for_snapshots=True)
    image_id = _image(ec2, launch)
    sandbox.state.clock.advance(99)
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "pending"
    sandbox.state.clock.advance(1)
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available"


def test_the_fast_durations_are_unchanged(sandbox, ec2, launch):
    image_id = _image(ec2, launch)
    sandbox.state.clock.advance(3)
    states = (ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"], {s["State"] for s in _own_snapshots(ec2)})
    assert states == ("available", {"pending"})
