# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Retire old pre-patch AMIs by policy, never anything else.

Only AMIs tagged ``cms:patching=pre-patch`` for this landing zone are
considered.  Per instance, an AMI is removed only when every rule agrees: it is
not the instance's newest *verified* AMI nor among the newest ``keep_last``
verified ones (``available`` and tagged ``cms:patching:verified-at``: an AMI
that failed verification is no backup and does not count), it is older than
``max_age_days``, it is not from the current run, it is ``available`` (pending or
failed images are left alone), and nothing can launch from it: no version of
any launch template (``resolve:ssm:`` image aliases resolved through Parameter
Store) and no Auto Scaling launch configuration names it.

Removal is DeregisterImage with DeleteAssociatedSnapshots (DeregisterImage, EC2
API reference): AWS answers per snapshot in DeleteSnapshotResults.  A snapshot
it did not delete is deleted here, retried a bounded number of times while it
answers ``InvalidSnapshot.InUse`` (it does for a while after the deregistration),
and whatever is still there is reported, never silently left.  Snapshots tagged
as ours whose AMI is gone (left by an older version of this collection) are
found and deleted as well.
"""

import datetime
import re
import time

from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.module_utils._backup import _parse_time
from ansible_collections.cms.patching.plugins.module_utils._batching import chunks
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._retry import is_transient, paginate
from ansible_collections.cms.patching.plugins.module_utils._session import describe_aws_error, is_error

SSM_PREFIX = "resolve:ssm:"
# GetParameters takes at most 10 names a call (GetParameters, Systems Manager API reference).
SSM_NAMES_PER_CALL = 10
# A snapshot AWS did not delete with its image: this many attempts, this many seconds apart, then it is reported.
SNAPSHOT_ATTEMPTS = 6
SNAPSHOT_RETRY_SECONDS = 10.0
# CreateImage describes each snapshot as "Created by CreateImage(i-...) for ami-...".
_CREATED_FOR = re.compile(r"\bfor (ami-[0-9a-f]+)")


def is_verified(image):
    return image.get("State") == "available" and _tags.VERIFIED_AT in _tags.as_dict(image.get("Tags"))


def decide(images, policy, current_run_id, now, in_use):
    """Split one instance's images into (remove, keep) lists of (image, reason), newest first.

    ``in_use`` maps image IDs to what can launch from them ("launch template lt-... version 3").
    """
    keep_last = policy.get("keep_last") or 0
    max_age = policy.get("max_age_days") or 0
    ordered = sorted(images, key=lambda i: i.get("CreationDate", ""), reverse=True)
    remove, keep = [], []
    verified_rank = 0
    for image in ordered:
        tags = _tags.as_dict(image.get("Tags"))
        age_days = (now - (_parse_time(image.get("CreationDate")) or now)) / 86400.0
        verified = is_verified(image)
        if verified:
            verified_rank += 1
        if tags.get(_tags.RUN_ID) == current_run_id:
            keep.append((image, "made by the current run"))
        elif image.get("State") != "available":
            keep.append((image, "state is %s" % image.get("State")))
        elif verified and verified_rank == 1:
            keep.append((image, "the instance's newest verified AMI"))
        elif verified and keep_last and verified_rank <= keep_last:
            keep.append((image, "one of the newest %d verified" % keep_last))
        elif max_age and age_days < max_age:
            keep.append((image, "younger than %d days" % max_age))
        elif image["ImageId"] in in_use:
            keep.append((image, "used by %s" % in_use[image["ImageId"]]))
        elif verified:
            remove.append((image, "older than %d days and not among the newest %d verified" % (max_age, keep_last)))
        else:
            remove.append((image, "older than %d days and never verified" % max_age))
    return remove, keep


def _parameter_refs(parameter, requested):
    """The requested names ('name', 'name:3', 'name:label', or ARNs of them) a GetParameters answer item stands for."""
    found = []
    for ref in requested:
        if ref.startswith("arn:"):
            head, _sep, rest = ref.partition(":parameter/")
            name, _sep, selector = rest.partition(":")
            matches = parameter.get("ARN") == "%s:parameter/%s" % (head, name) or parameter.get("Name") in (name, "/" + name)
        else:
            name, _sep, selector = ref.partition(":")
            matches = parameter.get("Name") == name
        # AWS names the selector it answered (":3"); when it does not, the item may stand for any selector of that name.
        if matches and (not parameter.get("Selector") or parameter["Selector"].lstrip(":") == selector):
            found.append(ref)
    return found


def images_in_use(fleet, location):
    """ImageId -> what can launch from it, for every version of every launch template and every launch configuration.

    DescribeLaunchTemplateVersions describes all versions only per template (for all templates at once, only $Latest /
    $Default: DescribeLaunchTemplateVersions, EC2 API reference), so it is one call per template - made only when
    something would be removed.  No MaxResults: moto cuts pages at MaxResults without a NextToken.  An ImageId of
    ``resolve:ssm:<name|ARN>[:version|:label]`` is resolved at launch ("Use a Systems Manager parameter instead of an
    AMI ID", EC2 User Guide), so the parameter's value is looked up the same way, with GetParameters.
    """
    ec2 = fleet.client("ec2", *location)
    used, aliases = {}, {}
    for template in paginate(ec2.describe_launch_templates, "LaunchTemplates"):
        template_id = template["LaunchTemplateId"]
        for version in paginate(ec2.describe_launch_template_versions, "LaunchTemplateVersions", LaunchTemplateId=template_id):
            image_id = (version.get("LaunchTemplateData") or {}).get("ImageId") or ""
            where = "launch template %s (%s) version %s" % (template_id, template.get("LaunchTemplateName", ""), version.get("VersionNumber"))
            if image_id.startswith(SSM_PREFIX):
                aliases.setdefault(image_id[len(SSM_PREFIX):], []).append(where)
            elif image_id:
                used.setdefault(image_id, where)
    if aliases:
        ssm = fleet.client("ssm", *location)
        for chunk in chunks(sorted(aliases), SSM_NAMES_PER_CALL):
            # A parameter that does not exist (InvalidParameters) cannot launch anything; one we may not read fails the location.
            for parameter in ssm.get_parameters(Names=chunk).get("Parameters", []):
                for ref in _parameter_refs(parameter, chunk):
                    used.setdefault(parameter.get("Value", ""), "%s through %s%s" % (aliases[ref][0], SSM_PREFIX, ref))
    autoscaling = fleet.client("autoscaling", *location)
    for config in paginate(autoscaling.describe_launch_configurations, "LaunchConfigurations"):
        if config.get("ImageId"):
            used.setdefault(config["ImageId"], "launch configuration %s" % config.get("LaunchConfigurationName", ""))
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
        "verified": is_verified(image),
        "snapshot_ids": [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")],
        "snapshots_left": [],
        "reason": reason,
        "plan": "",
    }


def delete_snapshots(ec2, snapshot_ids, sleep, attempts=SNAPSHOT_ATTEMPTS, delay=SNAPSHOT_RETRY_SECONDS):
    """Delete each snapshot, retrying InvalidSnapshot.InUse and server errors; {snapshot: last error} of those still there."""
    todo, last = list(snapshot_ids), {}
    for attempt in range(attempts):
        if attempt:
            sleep(delay)
        retry = []
        for snap_id in todo:
            try:
                ec2.delete_snapshot(SnapshotId=snap_id)
                last.pop(snap_id, None)
            except Exception as exc:  # pylint: disable=broad-except
                if is_error(exc, "InvalidSnapshot.NotFound"):
                    last.pop(snap_id, None)
                    continue
                last[snap_id] = describe_aws_error(exc)
                if is_error(exc, "InvalidSnapshot.InUse") or is_transient(exc):
                    retry.append(snap_id)
        todo = retry
        if not todo:
            break
    return last


def _retire(ec2, record):
    """DeregisterImage with its snapshots; the IDs of the snapshots AWS did not say it deleted."""
    try:
        answer = ec2.deregister_image(ImageId=record["ami_id"], DeleteAssociatedSnapshots=True)
    except Exception as exc:  # pylint: disable=broad-except
        if not is_error(exc, "InvalidAMIID.Unavailable", "InvalidAMIID.NotFound"):
            raise
        answer = {}  # already deregistered: its snapshots may still be there
    results = {r.get("SnapshotId"): r.get("ReturnCode") for r in answer.get("DeleteSnapshotResults") or []}
    return [s for s in record["snapshot_ids"] if results.get(s) != "success"]


def _orphans(ec2, lz, images, current_run_id, now, max_age_days, location):
    """Snapshots tagged as ours whose AMI no longer exists (an older version deregistered without deleting them).

    Only those older than max_age_days: a snapshot of an image still being created can show before its image does.
    """
    referenced = {m["Ebs"]["SnapshotId"] for i in images for m in i.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")}
    existing = {i["ImageId"] for i in images}
    filters = [_tags.tag_filter(_tags.PATCHING, _tags.PRE_PATCH), _tags.tag_filter(_tags.LZ, lz)]
    found = []
    for snap in paginate(ec2.describe_snapshots, "Snapshots", OwnerIds=["self"], Filters=filters, MaxResults=1000):
        tags = _tags.as_dict(snap.get("Tags"))
        match = _CREATED_FOR.search(snap.get("Description") or "")
        ami_id = match.group(1) if match else ""
        started = _parse_time(snap.get("StartTime"))
        if snap["SnapshotId"] in referenced or ami_id in existing or tags.get(_tags.RUN_ID) == current_run_id:
            continue
        if started is None or now - started < max_age_days * 86400.0:
            continue
        found.append(
            {
                "snapshot_id": snap["SnapshotId"],
                "ami_id": ami_id,
                "instance_id": tags.get(_tags.INSTANCE_ID, ""),
                "run_id": tags.get(_tags.RUN_ID, ""),
                "account_id": location[0],
                "region": location[1],
                "start_time": snap["StartTime"].isoformat() if isinstance(snap.get("StartTime"), datetime.datetime) else str(snap.get("StartTime") or ""),
                "reason": "its AMI %s no longer exists" % (ami_id or "(unknown)"),
                "plan": "",
                "deleted": False,
            }
        )
    return found


def _aws_now(fleet):
    server_clock = getattr(fleet, "server_clock", None)
    now = server_clock.now() if server_clock is not None else None
    return now if now is not None else _now()


def apply_location(fleet, location, lz, policy, current_run_id, check_mode, now, sleep=time.sleep):
    ec2 = fleet.client("ec2", *location)
    filters = [_tags.tag_filter(_tags.PATCHING, _tags.PRE_PATCH), _tags.tag_filter(_tags.LZ, lz)]
    images = list(paginate(ec2.describe_images, "Images", Owners=["self"], Filters=filters, MaxResults=1000))
    # Ages compare AWS's CreationDate with AWS's clock (the Date of the answer just read), not the controller's.
    now = now if now is not None else _aws_now(fleet)
    by_instance = {}
    for image in images:
        by_instance.setdefault(_tags.as_dict(image.get("Tags")).get(_tags.INSTANCE_ID, ""), []).append(image)
    decisions = {key: decide(group, policy, current_run_id, now, {}) for key, group in by_instance.items()}
    if any(remove for remove, _keep in decisions.values()):
        # Only worth the calls when something would go; a failure to read them keeps everything (the location fails).
        in_use = images_in_use(fleet, location)
        decisions = {key: decide(group, policy, current_run_id, now, in_use) for key, group in by_instance.items()}
    removed, kept, errors, leftover = [], [], [], {}
    for remove, keep in decisions.values():
        kept.extend(_record(image, location, reason) for image, reason in keep)
        for image, reason in remove:
            record = _record(image, location, reason)
            if check_mode:
                record["plan"] = "would deregister %s and delete its snapshots %s" % (record["ami_id"], ", ".join(record["snapshot_ids"]) or "(none)")
            else:
                try:
                    for snap_id in _retire(ec2, record):
                        leftover[snap_id] = record
                except Exception as exc:  # pylint: disable=broad-except
                    errors.append("%s: deregister failed: %s" % (record["ami_id"], describe_aws_error(exc)))
                    continue
            removed.append(record)
    orphans = _orphans(ec2, lz, images, current_run_id, now, policy.get("max_age_days") or 0, location)
    for orphan in orphans:
        if check_mode:
            orphan["plan"] = "would delete snapshot %s: %s" % (orphan["snapshot_id"], orphan["reason"])
    if not check_mode:
        remaining = delete_snapshots(ec2, list(leftover), sleep)
        # Orphans get one attempt: InUse there means another image uses the snapshot, and waiting would not change that.
        remaining.update(delete_snapshots(ec2, [o["snapshot_id"] for o in orphans], sleep, attempts=1))
        for snap_id, error in sorted(remaining.items()):
            if snap_id in leftover:
                leftover[snap_id]["snapshots_left"].append(snap_id)
                errors.append(
                    "%s was deregistered but its snapshot %s is still there after %d attempts (%s); it is tagged as ours, "
                    "so the next retention run deletes it" % (leftover[snap_id]["ami_id"], snap_id, SNAPSHOT_ATTEMPTS, error)
                )
        for orphan in orphans:
            orphan["deleted"] = orphan["snapshot_id"] not in remaining
            if orphan["snapshot_id"] in remaining and not remaining[orphan["snapshot_id"]].startswith("InvalidSnapshot.InUse"):
                # InUse here means another image still uses it: then it is no orphan, and stays.
                errors.append("orphaned snapshot %s: delete failed: %s" % (orphan["snapshot_id"], remaining[orphan["snapshot_id"]]))
        orphans = [o for o in orphans if o["deleted"]]
    return removed, kept, errors, orphans


def _now():
    return datetime.datetime.now(datetime.timezone.utc).timestamp()


def apply(fleet, locations, lz, policy, current_run_id, check_mode=False, max_workers=8, now=None, sleep=time.sleep):
    """Apply the policy in every account/region; return (removed, kept, errors, orphan snapshots deleted or planned)."""
    removed, kept, errors, orphans = [], [], [], []
    outcomes = fan_out(lambda loc: apply_location(fleet, loc, lz, policy, current_run_id, check_mode, now, sleep), locations, max_workers)
    for outcome in outcomes:
        if outcome.ok:
            removed.extend(outcome.result[0])
            kept.extend(outcome.result[1])
            errors.extend("%s/%s: %s" % (outcome.item[0], outcome.item[1], e) for e in outcome.result[2])
            orphans.extend(outcome.result[3])
        else:
            errors.append("%s/%s: %s" % (outcome.item[0], outcome.item[1], describe_aws_error(outcome.error)))
    return removed, kept, errors, orphans
