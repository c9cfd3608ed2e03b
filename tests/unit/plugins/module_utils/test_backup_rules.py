"""What 'verified' means, decided from image and snapshot states (no AWS)."""

import pytest

from ansible_collections.cms.patching.plugins.module_utils._backup import Backup, evaluate, render_name, template_error, template_length_error
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError

INSTANCE = {
    "instance_id": "i-1",
    "account_id": "1",
    "region": "r",
    "volumes": [{"device_name": "/dev/xvda", "volume_id": "vol-a"}, {"device_name": "/dev/sdf", "volume_id": "vol-b"}],
}
MAPPINGS = [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-a"}}, {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": "snap-b"}}]


def backup(state="available", mappings=None):
    b = Backup(dict(INSTANCE))
    # As DescribeImages shows it.
    b.adopt(
        {
            "ImageId": "ami-1",
            "State": state,
            "BlockDeviceMappings": MAPPINGS if mappings is None else mappings,
            "CreationDate": "2026-11-27T10:00:00.000Z",
        }
    )
    return b


def snaps(a="completed", b="completed", vol_b="vol-b"):
    return {
        "snap-a": {"SnapshotId": "snap-a", "State": a, "VolumeId": "vol-a"},
        "snap-b": {"SnapshotId": "snap-b", "State": b, "VolumeId": vol_b, "Progress": "40%"},
    }


def test_available_and_every_snapshot_completed_is_verified():
    b = backup()
    evaluate(b, snaps(), now=100, deadline=200)
    assert (b.status, b.reason, b.verified_at) == ("verified", "", 100)


def test_available_image_with_a_pending_snapshot_is_not_verified():
    b = backup()
    evaluate(b, snaps(b="pending"), now=100, deadline=200)
    assert b.status == "pending" and "snapshot snap-b is pending 40%" in b.reason and "1/2 snapshots completed" in b.reason


def test_pending_past_the_deadline_fails_with_the_reason():
    b = backup(state="pending")
    evaluate(b, snaps(), now=300, deadline=200)
    assert b.status == "failed" and b.reason.startswith("not verified within wait_timeout: AMI ami-1 is pending")


def test_failed_image_fails_with_aws_reason():
    b = backup(state="failed")
    b.image["StateReason"] = {"Code": "Client.InternalError", "Message": "snapshot copy failed"}
    evaluate(b, {}, now=1, deadline=200)
    assert b.status == "failed" and b.reason == "AMI ami-1 is failed: snapshot copy failed"


def test_snapshot_error_fails():
    b = backup()
    evaluate(b, snaps(b="error"), now=1, deadline=200)
    assert b.status == "failed" and "snapshot snap-b of /dev/sdf is error" in b.reason


def test_attached_volume_missing_from_the_ami_fails():
    b = backup(mappings=MAPPINGS[:1])
    evaluate(b, snaps(), now=1, deadline=200)
    assert b.status == "failed" and "volume vol-b (/dev/sdf) is attached to the instance but not in AMI ami-1" in b.reason


def test_snapshot_not_visible_yet_waits():
    b = backup()
    evaluate(b, {"snap-a": snaps()["snap-a"]}, now=1, deadline=200)
    assert b.status == "pending" and "snapshot snap-b not visible yet" in b.reason


def test_image_not_visible_yet_waits_then_fails():
    b = Backup(dict(INSTANCE))
    evaluate(b, {}, now=1, deadline=200)
    assert b.status == "pending"
    evaluate(b, {}, now=201, deadline=200)
    assert b.status == "failed" and "not visible" in b.reason


def test_final_states_do_not_change():
    b = backup(state="failed")
    evaluate(b, {}, now=1, deadline=200)
    b.image["State"] = "available"
    evaluate(b, snaps(), now=2, deadline=200)
    assert b.status == "failed"


def test_templates():
    assert template_error("cms-{instance_id}-{run_id}") is None
    assert "unknown placeholder {host}" in template_error("x-{host}")
    assert render_name("pre {name}: {instance_id}!", {"name": "web#1", "instance_id": "i-1"}) == "pre web-1- i-1-"
    assert len(render_name("{name}", {"name": "x" * 300})) == 128


FIELDS = {"instance_id": "i-0123456789abcdef0", "run_id": "20261127T101500Z-nightly", "lz": "prod", "name": "w" * 300}


def test_a_long_name_tag_never_pushes_the_identifiers_out():
    name = render_name("cms-{name}-{instance_id}-{run_id}", FIELDS)
    assert len(name) == 128 and name.endswith("-i-0123456789abcdef0-20261127T101500Z-nightly") and name.startswith("cms-www")
    # Every occurrence of the free text gives way; the identifiers stay whole.
    twice = render_name("{name}/{name}/{instance_id}", FIELDS)
    assert len(twice) <= 128 and twice.endswith("/i-0123456789abcdef0")
    # {lz} gives way after {name}.
    lz = render_name("{name}{lz}{instance_id}{run_id}", dict(FIELDS, lz="l" * 300))
    assert len(lz) == 128 and "w" not in lz and lz.endswith("i-0123456789abcdef020261127T101500Z-nightly")


def test_descriptions_keep_their_identifiers_in_255_characters():
    text = render_name("Pre-patch backup of {instance_id} ({name}) for run {run_id}", FIELDS, limit=255, clean=False)
    assert len(text) == 255 and text.endswith(") for run 20261127T101500Z-nightly")


def test_a_template_too_long_without_its_free_text_is_refused():
    assert template_length_error("cms-{instance_id}-{run_id}", 128, "r" * 64) is None
    error = template_length_error("{account_id}-{region}-{instance_id}-{date}-" + "x" * 60 + "-{run_id}", 128, "r" * 64)
    assert error.startswith("is 193 characters long without {name} and {lz}")
    with pytest.raises(FleetError):
        render_name("x" * 120 + "{run_id}", FIELDS)


def test_a_pending_image_without_mappings_is_pending_an_available_one_fails():
    b = backup(state="pending", mappings=[])
    evaluate(b, {}, now=1, deadline=200)
    assert b.status == "pending" and "no block device mappings listed yet" in b.reason
    b = backup(state="available", mappings=[])
    evaluate(b, {}, now=1, deadline=200)
    assert b.status == "failed" and "AMI ami-1 has no EBS snapshot at all" in b.reason


def test_an_image_created_but_not_visible_is_pending_until_the_deadline():
    b = Backup(dict(INSTANCE))
    b.image = {"ImageId": "ami-9", "State": "pending", "BlockDeviceMappings": []}
    evaluate(b, {}, now=1, deadline=200)
    assert b.status == "pending" and b.reason == "AMI ami-9 was created; DescribeImages does not show it yet"
    b.error = "could not read AMI state in 1/r: InternalError: try again"
    evaluate(b, {}, now=201, deadline=200)
    assert b.status == "failed"
    assert b.reason == (
        "not verified within wait_timeout: AMI ami-9 was created; DescribeImages does not show it yet; "
        "last error: could not read AMI state in 1/r: InternalError: try again"
    )


@pytest.mark.parametrize("state", ["failed", "error", "invalid", "deregistered", "disabled"])
def test_every_failed_image_state(state):
    b = backup(state=state)
    evaluate(b, snaps(), now=1, deadline=200)
    assert b.status == "failed"


def test_an_available_image_whose_snapshots_are_not_read_yet_is_pending_and_says_why():
    b = backup()
    b.deferred = True
    evaluate(b, {}, now=100, deadline=200)
    assert b.status == "pending"
    assert b.reason == "AMI ami-1 is available; its 2 snapshot(s) are checked once no other AMI of this run in 1/r is pending"
    # Unread is never verified, and the deadline still decides.
    evaluate(b, {}, now=200, deadline=200)
    assert b.status == "failed" and b.reason.startswith("not verified within wait_timeout: AMI ami-1 is available; its 2 snapshot(s)")


def test_this_run_verified_at_tag_stands_for_the_check_it_records_only_when_trusted():
    tagged = backup()
    tagged.image["Tags"] = [{"Key": "cms:patching:verified-at", "Value": "2026-11-27T10:05:00Z"}]
    evaluate(tagged, {}, now=1e10, deadline=2e10, trust_verified_tag=True)
    assert tagged.status == "verified" and tagged.verified_at == 1795773900.0
    # Without trust (mode=verify) the snapshots decide: none read, so not verified.
    untrusted = backup()
    untrusted.image["Tags"] = list(tagged.image["Tags"])
    evaluate(untrusted, {}, now=100, deadline=200)
    assert untrusted.status == "pending" and "snapshot snap-a not visible yet" in untrusted.reason
    # A tag never makes a pending image verified.
    pending = backup(state="pending")
    pending.image["Tags"] = list(tagged.image["Tags"])
    evaluate(pending, {}, now=100, deadline=200, trust_verified_tag=True)
    assert pending.status == "pending"
