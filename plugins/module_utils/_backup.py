# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Phase 2, backup: one AMI per instance, verified as a whole machine.

*Verified* means the image is ``available``, every EBS snapshot in its block
device mappings is ``completed``, and every EBS volume attached to the instance
is covered by a mapping (the snapshot's source volume is that volume).  Anything
else by the deadline is ``failed`` with the reason.

Fleet-first: AMIs are created concurrently within a bound; each poll round
costs one DescribeImages and at most one DescribeSnapshots per account/region
for the whole batch, found by the run-ID tag (so an image that is not yet
visible right after CreateImage is "pending", never an InvalidAMIID.NotFound).
A re-run with the same run ID finds the AMIs it made instead of making more.
"""

import datetime
import re
import time

from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.module_utils._batching import by_location, chunks
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._retry import paginate
from ansible_collections.cms.patching.plugins.module_utils._session import describe_aws_error, is_error

FAILED_IMAGE_STATES = ("failed", "error", "invalid", "deregistered", "disabled")
TEMPLATE_FIELDS = ("instance_id", "name", "run_id", "lz", "account_id", "region", "date")
# AMI names: 3-128 characters of letters, digits and ( ) [ ] space . / - ' @ _
_AMI_NAME_BAD = re.compile(r"[^A-Za-z0-9()\[\] ./\-'@_]")
TAG_BATCH = 200
ID_FILTER_BATCH = 200


def template_error(template):
    """None when the template only uses known placeholders, else a sentence naming the bad one."""
    try:
        template.format(**{k: "x" for k in TEMPLATE_FIELDS})
    except KeyError as exc:
        return "unknown placeholder {%s} (known: %s)" % (exc.args[0], ", ".join("{%s}" % f for f in TEMPLATE_FIELDS))
    except (ValueError, IndexError) as exc:
        return "is not a valid template: %s" % exc
    return None


def render_name(template, fields):
    name = _AMI_NAME_BAD.sub("-", template.format(**fields))[:128]
    return name if len(name) >= 3 else (name + "---")[:3]


def _parse_time(value):
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    try:
        return datetime.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


class Backup:
    """State of one instance's backup during a module run."""

    __slots__ = ("instance", "image", "created", "created_at", "status", "reason", "verified_at", "error")

    def __init__(self, instance):
        self.instance = instance
        self.image = None
        self.created = False
        self.created_at = None
        self.status = "pending"
        self.reason = ""
        self.verified_at = None
        self.error = None

    @property
    def instance_id(self):
        return self.instance["instance_id"]

    def snapshot_ids(self):
        if not self.image:
            return []
        return [m["Ebs"]["SnapshotId"] for m in self.image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]

    def started(self):
        if self.created_at is not None:
            return self.created_at
        return _parse_time((self.image or {}).get("CreationDate"))

    def result(self, now):
        started = self.started()
        end = self.verified_at or now
        return {
            "instance_id": self.instance_id,
            "account_id": self.instance["account_id"],
            "region": self.instance["region"],
            "name": self.instance.get("name", ""),
            "ami_id": (self.image or {}).get("ImageId", ""),
            "ami_name": (self.image or {}).get("Name", ""),
            "image_state": (self.image or {}).get("State", ""),
            "snapshot_ids": self.snapshot_ids(),
            "backup_status": self.status,
            "reason": self.reason,
            "created": self.created,
            "seconds": int(round(end - started)) if started else 0,
        }


def evaluate(backup, snapshots, now, deadline):
    """Set backup.status/reason from the image and snapshot states; 'pending' until final or past the deadline."""
    if backup.status in ("verified", "failed", "skipped"):
        return
    image = backup.image
    if image is None:
        pending_reason = "the AMI is not visible yet"
    else:
        state = image.get("State")
        if state in FAILED_IMAGE_STATES:
            why = image.get("StateReason", {}).get("Message") or image.get("StateReason", {}).get("Code") or "no reason given"
            backup.status, backup.reason = "failed", "AMI %s is %s: %s" % (image["ImageId"], state, why)
            return
        problems, waiting = _snapshot_problems(backup, snapshots)
        if problems:
            backup.status, backup.reason = "failed", "; ".join(problems)
            return
        if state == "available" and not waiting:
            backup.status, backup.reason, backup.verified_at = "verified", "", now
            return
        pending_reason = "AMI %s is %s; %s" % (image["ImageId"], state, "; ".join(waiting) if waiting else "all snapshots completed")
    if now >= deadline:
        backup.status, backup.reason = "failed", "not verified within wait_timeout: %s" % pending_reason
    else:
        backup.reason = pending_reason


def _snapshot_problems(backup, snapshots):
    """(problems, still-waiting notes) for the image's snapshots and the instance's volume coverage."""
    problems, waiting = [], []
    mappings = [m for m in backup.image.get("BlockDeviceMappings", []) if "Ebs" in m]
    covered_volumes, covered_devices = set(), set()
    done = 0
    for mapping in mappings:
        snap_id = mapping["Ebs"].get("SnapshotId")
        if not snap_id:
            waiting.append("%s has no snapshot yet" % mapping.get("DeviceName"))
            continue
        snap = snapshots.get(snap_id)
        if snap is None:
            waiting.append("snapshot %s not visible yet" % snap_id)
            continue
        covered_devices.add(mapping.get("DeviceName"))
        if snap.get("VolumeId"):
            covered_volumes.add(snap["VolumeId"])
        status = snap.get("State")
        if status == "completed":
            done += 1
        elif status in ("error", "recoverable"):
            problems.append(
                "snapshot %s of %s is %s%s" % (snap_id, mapping.get("DeviceName"), status, ": %s" % snap["StateMessage"] if snap.get("StateMessage") else "")
            )
        else:
            waiting.append("snapshot %s is %s %s" % (snap_id, status, snap.get("Progress", "")))
    if waiting and done:
        waiting.insert(0, "%d/%d snapshots completed" % (done, len(mappings)))
    if not waiting:
        for volume in backup.instance.get("volumes") or []:
            if volume["volume_id"] not in covered_volumes and volume["device_name"] not in covered_devices:
                problems.append(
                    "volume %s (%s) is attached to the instance but not in AMI %s" % (volume["volume_id"], volume["device_name"], backup.image["ImageId"])
                )
        if not mappings:
            problems.append("AMI %s has no EBS snapshot at all" % backup.image["ImageId"])
    return problems, waiting


class BackupRun:
    """Create (or find) and verify the AMIs of a batch of instances."""

    def __init__(self, fleet, instances, run_id, lz, options, check_mode=False, clock=time.time, sleep=time.sleep):
        self.fleet = fleet
        self.run_id = run_id
        self.lz = lz
        self.options = options
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.backups = {i["instance_id"]: Backup(i) for i in instances}
        self.groups = by_location(instances)
        self.rounds = 0
        self.snapshots = {}
        self.changed = False
        self.create = True

    # -- AWS reads --------------------------------------------------------------------------------

    def _images(self, location):
        """This run's AMIs; in verify mode without a run ID, every pre-patch AMI of the landing zone (the newest per instance wins)."""
        ec2 = self.fleet.client("ec2", *location)
        filters = [_tags.tag_filter(_tags.PATCHING, _tags.PRE_PATCH)]
        filters.append(_tags.tag_filter(_tags.RUN_ID, self.run_id) if self.run_id else _tags.tag_filter(_tags.LZ, self.lz))
        return list(paginate(ec2.describe_images, "Images", Owners=["self"], Filters=filters, MaxResults=1000))

    def _snapshots(self, location, snapshot_ids):
        """One call for the whole run by its tag; across runs (verify without run ID) by ID, 200 a call."""
        ec2 = self.fleet.client("ec2", *location)
        if self.run_id:
            batches = [[_tags.tag_filter(_tags.RUN_ID, self.run_id)]]
        else:
            batches = [[{"Name": "snapshot-id", "Values": chunk}] for chunk in chunks(sorted(snapshot_ids), ID_FILTER_BATCH)]
        for filters in batches:
            yield from paginate(ec2.describe_snapshots, "Snapshots", OwnerIds=["self"], Filters=filters, MaxResults=1000)

    def _fill_volumes(self, location, members):
        """Instances given without their volumes (e.g. not from discovery): read them, 200 IDs a call."""
        missing = [b for b in members if b.instance.get("volumes") is None]
        if not missing:
            return
        ec2 = self.fleet.client("ec2", *location)
        found = {}
        for chunk in chunks([b.instance_id for b in missing], ID_FILTER_BATCH):
            for reservation in paginate(ec2.describe_instances, "Reservations", Filters=[{"Name": "instance-id", "Values": chunk}], MaxResults=1000):
                for inst in reservation.get("Instances", []):
                    found[inst["InstanceId"]] = [
                        {"device_name": m["DeviceName"], "volume_id": m["Ebs"]["VolumeId"]} for m in inst.get("BlockDeviceMappings", []) if m.get("Ebs")
                    ]
        for backup in missing:
            if backup.instance_id in found:
                backup.instance["volumes"] = found[backup.instance_id]
            else:
                backup.status, backup.reason = "failed", "instance %s not found in %s/%s" % (backup.instance_id, location[0], location[1])

    # -- one round ----------------------------------------------------------------------------------

    def _poll_location(self, location):
        members = [self.backups[i["instance_id"]] for i in self.groups[location]]
        open_ = [b for b in members if b.status == "pending"]
        if not open_:
            return
        newest = {}
        for image in self._images(location):
            owner = _tags.as_dict(image.get("Tags")).get(_tags.INSTANCE_ID)
            if owner in self.backups and (owner not in newest or image.get("CreationDate", "") > newest[owner].get("CreationDate", "")):
                newest[owner] = image
        for backup in open_:
            backup.image = newest.get(backup.instance_id, backup.image)
        wanted = {s for b in open_ for s in b.snapshot_ids() if self.snapshots.get(s, {}).get("State") != "completed"}
        if wanted:
            for snap in self._snapshots(location, wanted):
                self.snapshots[snap["SnapshotId"]] = snap
            untagged = sorted(s for s in wanted if s not in self.snapshots)
            if untagged and self.create and not self.check_mode:
                self._tag_snapshots(location, untagged, members)

    def _tag_snapshots(self, location, snapshot_ids, members):
        """Snapshots that CreateImage did not tag (snapshot_tags_on_create=false, or AWS dropped them) get the run's tags here."""
        owner = {s: b for b in members for s in b.snapshot_ids()}
        ec2 = self.fleet.client("ec2", *location)
        by_instance = {}
        for snap_id in snapshot_ids:
            by_instance.setdefault(owner[snap_id].instance_id, []).append(snap_id)
        # Tags differ per instance only in the instance-id tag: the run-wide tags go out in batches, that one tag per instance.
        common = _tags.backup_tags(self.run_id, "", self.lz, self.options.get("tags"))
        common.pop(_tags.INSTANCE_ID)
        try:
            for chunk in chunks(snapshot_ids, TAG_BATCH):
                ec2.create_tags(Resources=chunk, Tags=_tags.as_list(common))
            for instance_id, snaps in by_instance.items():
                ec2.create_tags(Resources=snaps, Tags=_tags.as_list({_tags.INSTANCE_ID: instance_id}))
            self.changed = True
        except Exception as exc:  # pylint: disable=broad-except
            if not is_error(exc, "InvalidSnapshot.NotFound"):
                raise
            # Not visible yet right after CreateImage: the next round tries again.

    def poll(self):
        self.rounds += 1
        outcomes = fan_out(self._poll_location, list(self.groups), self.options.get("max_workers", 8))
        for outcome in outcomes:
            if not outcome.ok:
                for item in self.groups[outcome.item]:
                    backup = self.backups[item["instance_id"]]
                    if backup.status == "pending":
                        backup.status, backup.reason = (
                            "failed",
                            "could not read AMI state in %s/%s: %s" % (outcome.item[0], outcome.item[1], describe_aws_error(outcome.error)),
                        )
        now = self.clock()
        for backup in self.backups.values():
            if not self.create and backup.image is None and backup.status == "pending":
                where = "run %s" % self.run_id if self.run_id else "landing zone %s" % self.lz
                backup.status, backup.reason = "failed", "no pre-patch AMI of this instance found for %s" % where
            started = backup.started() or now
            evaluate(backup, self.snapshots, now, started + self.options["wait_timeout"])

    # -- creating -----------------------------------------------------------------------------------

    def _create_one(self, backup):
        inst = backup.instance
        fields = dict(
            instance_id=inst["instance_id"],
            name=inst.get("name") or inst["instance_id"],
            run_id=self.run_id,
            lz=self.lz,
            account_id=inst["account_id"],
            region=inst["region"],
            date=datetime.datetime.fromtimestamp(self.clock(), datetime.timezone.utc).strftime("%Y%m%d"),
        )
        tags = _tags.as_list(_tags.backup_tags(self.run_id, inst["instance_id"], self.lz, self.options.get("tags")))
        specs = [{"ResourceType": "image", "Tags": tags}]
        if self.options.get("snapshot_tags_on_create", True):
            specs.append({"ResourceType": "snapshot", "Tags": tags})
        ec2 = self.fleet.client("ec2", inst["account_id"], inst["region"])
        response = ec2.create_image(
            InstanceId=inst["instance_id"],
            Name=render_name(self.options["name_template"], fields),
            Description=self.options["description_template"].format(**fields)[:255],
            NoReboot=bool(self.options.get("no_reboot", True)),
            TagSpecifications=specs,
        )
        return response["ImageId"]

    def create_missing(self):
        """CreateImage for every instance without an AMI in this run, max_concurrent_creates at a time."""
        todo = [b for b in self.backups.values() if b.status == "pending" and b.image is None]
        if self.check_mode:
            for backup in todo:
                backup.status, backup.reason = "skipped", "check mode: would create an AMI"
            self.changed = self.changed or bool(todo)
            return
        for outcome in fan_out(self._create_one, todo, self.options.get("max_concurrent_creates", 10)):
            backup = outcome.item
            if outcome.ok:
                backup.created, backup.created_at = True, self.clock()
                backup.image = {"ImageId": outcome.result, "State": "pending", "BlockDeviceMappings": []}
                self.changed = True
            else:
                backup.status, backup.reason = "failed", "CreateImage failed: %s" % describe_aws_error(outcome.error)

    def tag_verified(self):
        """Mark verified AMIs so the patch gate (and people) can tell them from unverified ones."""
        if self.check_mode:
            return
        stamp = datetime.datetime.fromtimestamp(self.clock(), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for location in self.groups:
            ids = [
                b.image["ImageId"]
                for b in (self.backups[i["instance_id"]] for i in self.groups[location])
                if b.status == "verified" and _tags.VERIFIED_AT not in _tags.as_dict(b.image.get("Tags"))
            ]
            ec2 = self.fleet.client("ec2", *location)
            for chunk in chunks(ids, TAG_BATCH):
                ec2.create_tags(Resources=chunk, Tags=[{"Key": _tags.VERIFIED_AT, "Value": stamp}])
                self.changed = True

    # -- the whole call ----------------------------------------------------------------------------

    def pending(self):
        return [b for b in self.backups.values() if b.status == "pending"]

    def run(self, create=True, wait=True, progress_interval=0):
        """Find, create, and poll until done, the deadline, or progress_interval seconds (then return to be called again)."""
        self.create = create
        for location, members in self.groups.items():
            self._fill_volumes(location, [self.backups[i["instance_id"]] for i in members])
        self.poll()
        if create:
            self.create_missing()
            if self.changed and not self.check_mode:
                # A first look right away: snapshot IDs appear early, and a small image may already be done.
                self.poll()
        started = self.clock()
        while self.pending():
            if not wait or self.check_mode or (progress_interval and self.clock() - started >= progress_interval):
                break
            self.sleep(self.options["poll_interval"])
            self.poll()
        if create:
            self.tag_verified()
        return [self.backups[i["instance_id"]].result(self.clock()) for members in self.groups.values() for i in members]
