# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Retire old pre-patch AMIs by policy, never anything else.

Only AMIs tagged ``cms:patching=pre-patch`` for this landing zone are
considered.  Per instance, an AMI is removed only when every rule agrees: it is
not among the newest ``keep_last`` available ones, it is older than
``max_age_days``, it is not from the current run, it is ``available`` (pending or
failed images are left alone) and no launch template's latest or default
version uses it.  Removal deregisters the image and then deletes its snapshots
explicitly (deregistering leaves them behind).
"""

import datetime

from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.module_utils._backup import _parse_time
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._retry import paginate
from ansible_collections.cms.patching.plugins.module_utils._session import describe_aws_error, is_error


def decide(images, policy, current_run_id, now, in_use):
    """Split one instance's images into (remove, keep) lists of (image, reason), newest first."""
    keep_last = policy.get("keep_last") or 0
    max_age = policy.get("max_age_days") or 0
    ordered = sorted(images, key=lambda i: i.get("CreationDate", ""), reverse=True)
    remove, keep = [], []
    available_rank = 0
    for image in ordered:
        tags = _tags.as_dict(image.get("Tags"))
        age_days = (now - (_parse_time(image.get("CreationDate")) or now)) / 86400.0
        if image.get("State") == "available":
            available_rank += 1
        if tags.get(_tags.RUN_ID) == current_run_id:
            keep.append((image, "made by the current run"))
        elif image.get("State") != "available":
            keep.append((image, "state is %s" % image.get("State")))
        elif keep_last and available_rank <= keep_last:
            keep.append((image, "one of the newest %d" % keep_last))
        elif max_age and age_days < max_age:
            keep.append((image, "younger than %d days" % max_age))
        elif image["ImageId"] in in_use:
            keep.append((image, "used by launch template %s" % in_use[image["ImageId"]]))
        else:
            remove.append((image, "older than %d days and not among the newest %d" % (max_age, keep_last)))
    return remove, keep


def _launch_template_images(ec2):
    """ImageId -> 'lt-... version N' for the latest and default version of every launch template."""
    used = {}
    for version in paginate(ec2.describe_launch_template_versions, "LaunchTemplateVersions", Versions=["$Latest", "$Default"], MaxResults=200):
        image_id = version.get("LaunchTemplateData", {}).get("ImageId")
        if image_id:
            used[image_id] = "%s version %s" % (version.get("LaunchTemplateId"), version.get("VersionNumber"))
    return used


def _record(image, location, reason):
    tags = _tags.as_dict(image.get("Tags"))
    return {
        "ami_id": image["ImageId"],
        "ami_name": image.get("Name", ""),
        "instance_id": tags.get(_tags.INSTANCE_ID, ""),
        "run_id": tags.get(_tags.RUN_ID, ""),
        "account_id": location[0],
        "region": location[1],
        "creation_date": image.get("CreationDate", ""),
        "state": image.get("State", ""),
        "snapshot_ids": [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")],
        "reason": reason,
    }


def _retire(ec2, record):
    """Deregister, then delete the snapshots; a snapshot already gone is fine."""
    ec2.deregister_image(ImageId=record["ami_id"])
    failed = []
    for snap_id in record["snapshot_ids"]:
        try:
            ec2.delete_snapshot(SnapshotId=snap_id)
        except Exception as exc:  # pylint: disable=broad-except
            if not is_error(exc, "InvalidSnapshot.NotFound"):
                failed.append("%s: %s" % (snap_id, describe_aws_error(exc)))
    return failed


def apply_location(fleet, location, lz, policy, current_run_id, check_mode, now):
    ec2 = fleet.client("ec2", *location)
    filters = [_tags.tag_filter(_tags.PATCHING, _tags.PRE_PATCH), _tags.tag_filter(_tags.LZ, lz)]
    by_instance = {}
    for image in paginate(ec2.describe_images, "Images", Owners=["self"], Filters=filters, MaxResults=1000):
        by_instance.setdefault(_tags.as_dict(image.get("Tags")).get(_tags.INSTANCE_ID, ""), []).append(image)
    decisions = {key: decide(images, policy, current_run_id, now, {}) for key, images in by_instance.items()}
    if any(remove for remove, _keep in decisions.values()):
        # Only worth a call when something would go.
        in_use = _launch_template_images(ec2)
        decisions = {key: decide(images, policy, current_run_id, now, in_use) for key, images in by_instance.items()}
    removed, kept, errors = [], [], []
    for remove, keep in decisions.values():
        kept.extend(_record(image, location, reason) for image, reason in keep)
        for image, reason in remove:
            record = _record(image, location, reason)
            if not check_mode:
                try:
                    failed = _retire(ec2, record)
                except Exception as exc:  # pylint: disable=broad-except
                    errors.append("%s: deregister failed: %s" % (record["ami_id"], describe_aws_error(exc)))
                    continue
                if failed:
                    errors.append("%s deregistered, but snapshots were left: %s" % (record["ami_id"], "; ".join(failed)))
            removed.append(record)
    return removed, kept, errors


def _now():
    return datetime.datetime.now(datetime.timezone.utc).timestamp()


def apply(fleet, locations, lz, policy, current_run_id, check_mode=False, max_workers=8, now=None):
    """Apply the policy in every account/region; return (removed, kept, errors)."""
    now = now if now is not None else _now()
    removed, kept, errors = [], [], []
    for outcome in fan_out(lambda loc: apply_location(fleet, loc, lz, policy, current_run_id, check_mode, now), locations, max_workers):
        if outcome.ok:
            removed.extend(outcome.result[0])
            kept.extend(outcome.result[1])
            errors.extend("%s/%s: %s" % (outcome.item[0], outcome.item[1], e) for e in outcome.result[2])
        else:
            errors.append("%s/%s: %s" % (outcome.item[0], outcome.item[1], describe_aws_error(outcome.error)))
    return removed, kept, errors
