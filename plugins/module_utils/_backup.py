# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Phase 2, backup: one AMI per instance, verified as a whole machine.

*Verified* means the image is ``available``, every EBS snapshot in its block
device mappings is ``completed``, and every EBS volume attached to the instance
is covered by a mapping (the snapshot's source volume is that volume).  Anything
else by the deadline is ``failed`` with the reason.

Fleet-first: AMIs are created concurrently within a bound; each poll round
costs one DescribeImages per account/region with AMIs still pending, for the
whole batch, found by the run-ID tag.  A re-run with the same run ID finds the
AMIs it made instead of making more.

Snapshots are read once per account/region, with one DescribeSnapshots (by the
run's tags) for all its AMIs, when none of its AMIs can still become available:
EC2 makes an image ``available`` only once every snapshot of it has completed
(CreateImage; "Create an Amazon EBS-backed AMI", EC2 User Guide), so reading them
earlier, image by image as they become available over half an hour, would only
repeat what the image says; the ``completed`` check itself is kept.  Waiting for
the last AMI of the location delays no one: the phase ends only when nothing is
pending.  They are read earlier for a call's only round (``wait=False``) and when
an available image's deadline comes.  Verified AMIs are tagged
``cms:patching:verified-at`` in the same round, one CreateTags per 1,000 of them
(CreateTags, EC2 API reference), and a later call of the same run (the next
progress call) takes the tag for what it says instead of reading the snapshots
again: it was set only after that check.

EC2 is eventually consistent ("Eventual consistency in the Amazon EC2 API",
EC2 API reference): right after CreateImage the image may be missing from
DescribeImages, and a ``pending`` image may list mappings without a SnapshotId.
Both are ``pending`` here, never ``failed``; only the deadline fails a backup,
and the deadline runs from the image's CreationDate on AWS's own clock (the
``Date`` of its answers), not the controller's.  A poll round that fails
changes nobody's status either: the error is kept and shown if the deadline
passes.  CreateImage has no ClientToken (CreateImage, EC2 API reference), so a
failed call whose outcome is unknown is never simply repeated: the AMI name is
unique per instance and run, so re-sending it either creates the image or
answers ``InvalidAMIName.Duplicate``, and the image of that name is then looked
up and adopted when its tags say it is this run's.
"""

import datetime
import re
import string
import time

from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.module_utils._batching import by_location, chunks
from ansible_collections.cms.patching.plugins.module_utils._fanout import Outcome, fan_out
from ansible_collections.cms.patching.plugins.module_utils._pace import progress_ends
from ansible_collections.cms.patching.plugins.module_utils._retry import THROTTLING_CODES, error_code, is_transient, paginate
from ansible_collections.cms.patching.plugins.module_utils._session import FleetError, describe_aws_error, is_error

FAILED_IMAGE_STATES = ("failed", "error", "invalid", "deregistered", "disabled")
TEMPLATE_FIELDS = ("instance_id", "name", "run_id", "lz", "account_id", "region", "date")
# Free text is shortened to make a name or description fit; the identifiers that make a name unique never are.
FREE_TEXT_FIELDS = ("name", "lz")
# The longest value each identifier can take, to check a template before any AMI is named.
IDENTIFIER_MAX = {"instance_id": 19, "account_id": 12, "region": 25, "date": 8}
NAME_LIMIT = 128
DESCRIPTION_LIMIT = 255
# AMI names: 3-128 characters of letters, digits and ( ) [ ] space . / - ' @ _
_AMI_NAME_BAD = re.compile(r"[^A-Za-z0-9()\[\] ./\-'@_]")
DUPLICATE_NAME = "InvalidAMIName.Duplicate"
# CreateTags takes up to 1,000 resource IDs a call (CreateTags, EC2 API reference).
TAG_BATCH = 1000
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


def template_length_error(template, limit, run_id):
    """None when the template fits ``limit`` with every identifier at its longest and the free text left out."""
    fields = dict({f: "" for f in FREE_TEXT_FIELDS}, run_id=run_id or "", **{k: "x" * n for k, n in IDENTIFIER_MAX.items()})
    length = len(template.format(**fields))
    if length > limit:
        return "is %d characters long without {name} and {lz} (for run ID %s); at most %d fit" % (length, run_id, limit)
    return None


def _placeholder_counts(template):
    counts = {}
    for _literal, field, _spec, _conv in string.Formatter().parse(template):
        if field:
            counts[field] = counts.get(field, 0) + 1
    return counts


def render_name(template, fields, limit=NAME_LIMIT, clean=True):
    """The template filled in, at most ``limit`` characters, its identifiers always whole.

    The identifiers ({instance_id}, {run_id}, ...) are what makes the name unique per instance and run; cutting
    them off (a long Name tag used to push them out) makes the next run collide with InvalidAMIName.Duplicate.
    So the template is measured with the free text left out, and the free text gets what is left.
    """
    values = {k: (_AMI_NAME_BAD.sub("-", str(v)) if clean else str(v)) for k, v in fields.items()}
    counts = _placeholder_counts(template)
    room = limit - len(template.format(**dict(values, **{f: "" for f in FREE_TEXT_FIELDS})))
    if room < 0:
        raise FleetError("%r is %d characters too long even without {name} and {lz} (limit %d)" % (template, -room, limit))
    for field in FREE_TEXT_FIELDS:  # {name} gives way first, then {lz}
        used = sum(counts.get(f, 0) * len(values.get(f, "")) for f in FREE_TEXT_FIELDS)
        if used > room and counts.get(field):
            over = used - room
            cut = -(-over // counts[field])  # ceil: every occurrence shrinks by the same amount
            values[field] = values[field][: max(0, len(values[field]) - cut)]
    name = template.format(**values)
    if not clean:
        return name
    # The template's own text may hold characters AMI names refuse too (one for one: the length stays).
    name = _AMI_NAME_BAD.sub("-", name)
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

    __slots__ = (
        "instance",
        "image",
        "seen",
        "created",
        "created_at",
        "since",
        "status",
        "reason",
        "verified_at",
        "error",
        "ami_name",
        "create_state",
        "note",
        "plan",
        "deferred",
    )

    def __init__(self, instance):
        self.instance = instance
        self.image = None
        # Whether DescribeImages has shown the image (False for the placeholder CreateImage's answer leaves).
        self.seen = False
        self.created = False
        # AWS time of this call's first CreateImage for the instance, and of the first look at it: deadlines before the image shows.
        self.created_at = None
        self.since = None
        self.status = "pending"
        self.reason = ""
        self.verified_at = None
        # The last failure of a poll round or of a CreateImage whose outcome is unknown; shown if the deadline passes.
        self.error = None
        self.ami_name = None
        # None, "retry" (CreateImage failed transiently: the AMI may exist) or "duplicate" (the name is taken: find the image by name).
        self.create_state = None
        # What CreateImage's Duplicate answer said, while the image of that name is looked for.
        self.note = ""
        self.plan = ""
        # Available, its snapshots not read yet: they are read once no other AMI of its account/region is pending.
        self.deferred = False

    @property
    def instance_id(self):
        return self.instance["instance_id"]

    def snapshot_ids(self):
        if not self.image:
            return []
        return [m["Ebs"]["SnapshotId"] for m in self.image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]

    def available(self):
        return self.seen and (self.image or {}).get("State") == "available"

    def verified_tag(self):
        """When an earlier call of the run verified the image (its cms:patching:verified-at tag), else None."""
        if not self.seen:
            return None
        value = _tags.as_dict(self.image.get("Tags")).get(_tags.VERIFIED_AT)
        if value is None:
            return None
        return _parse_time(value) or 0.0

    def adopt(self, image):
        self.image, self.seen, self.create_state, self.note, self.error = image, True, None, "", None

    def started(self):
        """When the deadline started, on AWS's clock: the image's CreationDate, else this call's CreateImage, else its first look."""
        created = _parse_time((self.image or {}).get("CreationDate")) if self.seen else None
        for value in (created, self.created_at, self.since):
            if value is not None:
                return value
        return None

    def result(self, now):
        started = self.started()
        end = self.verified_at or now
        return {
            "instance_id": self.instance_id,
            "account_id": self.instance["account_id"],
            "region": self.instance["region"],
            "name": self.instance.get("name", ""),
            "ami_id": (self.image or {}).get("ImageId", ""),
            "ami_name": (self.image or {}).get("Name", "") or (self.ami_name if self.image else ""),
            "image_state": (self.image or {}).get("State", "") if self.seen else "",
            "snapshot_ids": self.snapshot_ids(),
            "backup_status": self.status,
            "reason": self.reason,
            "plan": self.plan,
            "created": self.created,
            "seconds": max(0, int(round(end - started))) if started else 0,
        }


def evaluate(backup, snapshots, now, deadline, trust_verified_tag=False):
    """Set backup.status/reason from the image and snapshot states; 'pending' until final or past the deadline.

    With trust_verified_tag, an available image that carries cms:patching:verified-at is verified: a call of the same
    run set that tag after finding the image available and every snapshot of it completed.
    """
    if backup.status in ("verified", "failed", "skipped"):
        return
    image = backup.image
    if image is None:
        pending_reason = backup.note or "the AMI is not visible yet"
    elif not backup.seen:
        pending_reason = "AMI %s was created; DescribeImages does not show it yet" % image["ImageId"]
    else:
        state = image.get("State")
        if state in FAILED_IMAGE_STATES:
            why = image.get("StateReason", {}).get("Message") or image.get("StateReason", {}).get("Code") or "no reason given"
            backup.status, backup.reason = "failed", "AMI %s is %s: %s" % (image["ImageId"], state, why)
            return
        tagged = backup.verified_tag() if trust_verified_tag and state == "available" else None
        if tagged is not None:
            backup.status, backup.reason, backup.verified_at = "verified", "", tagged or now
            return
        if state == "available" and backup.deferred:
            # Not read yet on purpose (see BackupRun.poll): nothing is known against it.
            where = "%s/%s" % (backup.instance["account_id"], backup.instance["region"])
            problems = []
            waiting = ["its %d snapshot(s) are checked once no other AMI of this run in %s is pending" % (len(backup.snapshot_ids()), where)]
        elif state != "available" and not any(s in snapshots for s in backup.snapshot_ids()):
            # Its snapshots are read once it is available (see BackupRun.poll); what the image itself lists still shows.
            mappings = [m for m in image.get("BlockDeviceMappings", []) if "Ebs" in m]
            problems = []
            waiting = ["%s has no snapshot yet" % m.get("DeviceName") for m in mappings if not m["Ebs"].get("SnapshotId")]
            if not mappings:
                waiting.append("no block device mappings listed yet")
        else:
            problems, waiting = _snapshot_problems(backup, snapshots)
        if problems:
            backup.status, backup.reason = "failed", "; ".join(problems)
            return
        if state == "available" and not waiting:
            backup.status, backup.reason, backup.verified_at = "verified", "", now
            return
        if waiting:
            pending_reason = "AMI %s is %s; %s" % (image["ImageId"], state, "; ".join(waiting))
        elif state == "available":
            pending_reason = "AMI %s is available; all snapshots completed" % image["ImageId"]
        else:
            pending_reason = "AMI %s is %s (%d snapshot(s) listed; they are checked once it is available)" % (
                image["ImageId"],
                state,
                len(backup.snapshot_ids()),
            )
    if backup.error:
        pending_reason = "%s; last error: %s" % (pending_reason, backup.error)
    if now >= deadline:
        backup.status, backup.reason = "failed", "not verified within wait_timeout: %s" % pending_reason
    else:
        backup.reason = pending_reason


def _snapshot_problems(backup, snapshots):
    """(problems, still-waiting notes) for the image's snapshots and the instance's volume coverage."""
    problems, waiting = [], []
    available = backup.image.get("State") == "available"
    mappings = [m for m in backup.image.get("BlockDeviceMappings", []) if "Ebs" in m]
    covered_volumes, covered_devices = set(), set()
    done = 0
    for mapping in mappings:
        snap_id = mapping["Ebs"].get("SnapshotId")
        if not snap_id:
            # A pending image lists its mappings before their snapshots exist (eventual consistency): wait, the deadline decides.
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
    if not mappings and not available:
        waiting.append("no block device mappings listed yet")
    if waiting and done:
        waiting.insert(0, "%d/%d snapshots completed" % (done, len(mappings)))
    if not waiting:
        for volume in backup.instance.get("volumes") or []:
            if volume["volume_id"] not in covered_volumes and volume["device_name"] not in covered_devices:
                problems.append(
                    "volume %s (%s) is attached to the instance but not in AMI %s" % (volume["volume_id"], volume["device_name"], backup.image["ImageId"])
                )
        if not mappings:
            # Only an image AWS calls available with no EBS mapping at all is that; a pending one may not list them yet.
            problems.append("AMI %s has no EBS snapshot at all" % backup.image["ImageId"])
    return problems, waiting


def _foreign_message(run_id, lz, foreign):
    owners = sorted({f[3] for f in foreign})
    ami, account, region, other = foreign[0]
    return (
        "run ID %s belongs to landing zone %s, not %s: AMI %s in %s/%s (and %d more) is tagged %s=%s. A run ID is used in one landing zone "
        "only, and nothing was created; start a new run for landing zone %s (a new run_id), or resume that run with lz=%s."
        % (run_id, " and ".join(owners), lz, ami, account, region, len(foreign) - 1, _tags.LZ, other, lz, other)
    )


class BackupRun:
    """Create (or find) and verify the AMIs of a batch of instances."""

    def __init__(self, fleet, instances, run_id, lz, options, check_mode=False, clock=time.time, sleep=time.sleep):
        self.fleet = fleet
        self.run_id = run_id
        self.lz = lz
        self.options = options
        self.check_mode = check_mode
        # The controller's clock: only a fallback for AWS's (fleet.server_clock) before AWS has answered, and for progress_interval.
        self.clock = clock
        self.sleep = sleep
        self.backups = {i["instance_id"]: Backup(i) for i in instances}
        self.groups = by_location(instances)
        self.rounds = 0
        self.snapshots = {}
        self.changed = False
        self.create = True
        # Locations whose last poll round failed: nothing is created there until a round succeeds.
        self.unread = set(self.groups)
        # (ami, account, region, lz) of this run ID's AMIs tagged with another landing zone.
        self.foreign = []

    def now(self):
        """AWS's time (from the Date of its answers); the controller's clock only before AWS has answered at all."""
        server_clock = getattr(self.fleet, "server_clock", None)
        now = server_clock.now() if server_clock is not None else None
        return now if now is not None else self.clock()

    # -- AWS reads --------------------------------------------------------------------------------

    def _images(self, location):
        """This run's AMIs (by run ID; the landing zone is checked by the caller); without a run ID, the landing zone's (newest wins)."""
        ec2 = self.fleet.client("ec2", *location)
        filters = [_tags.tag_filter(_tags.PATCHING, _tags.PRE_PATCH)]
        filters.append(_tags.tag_filter(_tags.RUN_ID, self.run_id) if self.run_id else _tags.tag_filter(_tags.LZ, self.lz))
        return list(paginate(ec2.describe_images, "Images", Owners=["self"], Filters=filters, MaxResults=1000))

    def _images_named(self, location, names):
        ec2 = self.fleet.client("ec2", *location)
        for chunk in chunks(sorted(names), ID_FILTER_BATCH):
            yield from paginate(ec2.describe_images, "Images", Owners=["self"], Filters=[{"Name": "name", "Values": chunk}], MaxResults=1000)

    def _snapshots(self, location, snapshot_ids):
        """One call for the whole run by its tags; across runs (verify without run ID) by ID, 200 a call."""
        ec2 = self.fleet.client("ec2", *location)
        if self.run_id:
            batches = [[_tags.tag_filter(_tags.RUN_ID, self.run_id), _tags.tag_filter(_tags.LZ, self.lz)]]
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

    def _read_images(self, location):
        """This round's DescribeImages of a location with backups still open: adopt the images found."""
        open_ = [b for b in self._members(location) if b.status == "pending"]
        if not open_:
            return
        newest = {}
        for image in self._images(location):
            tags = _tags.as_dict(image.get("Tags"))
            if tags.get(_tags.LZ) != self.lz:
                # A run belongs to its landing zone: never adopt another's AMIs (the caller stops the run before creating anything).
                # An AMI without the tag was not made by this collection (every version tagged it) and is left alone.
                if self.run_id and tags.get(_tags.LZ):
                    self.foreign.append((image["ImageId"], location[0], location[1], tags[_tags.LZ]))
                continue
            owner = tags.get(_tags.INSTANCE_ID)
            if owner in self.backups and (owner not in newest or image.get("CreationDate", "") > newest[owner].get("CreationDate", "")):
                newest[owner] = image
        for backup in open_:
            if backup.instance_id in newest:
                # After a CreateImage of this call whose answer was lost (or a Duplicate), the image found is the one it asked for.
                backup.created = backup.created or backup.create_state is not None
                backup.adopt(newest[backup.instance_id])
        self._find_duplicates(location, [b for b in open_ if b.image is None and b.create_state == "duplicate"])

    def _trusts_tag(self):
        """A create call of a run takes its own verified-at tag as verified (see the module docstring); a verify call checks again."""
        return bool(self.create and self.run_id)

    def _deadline(self, backup, now):
        return (backup.started() or now) + self.options["wait_timeout"]

    def _awaits_snapshots(self, backup):
        """Available, and not every snapshot of it known completed (nor vouched for by this run's verified-at tag)."""
        if not backup.available() or (self._trusts_tag() and backup.verified_tag() is not None):
            return False
        return any(self.snapshots.get(s, {}).get("State") != "completed" for s in backup.snapshot_ids())

    def _may_become_available(self, backup, now):
        """An open backup whose image may still become available this call (its location's snapshot read waits for it)."""
        if backup.available():
            return False
        if backup.seen and backup.image.get("State") in FAILED_IMAGE_STATES:
            return False  # failed this round
        if backup.image is None and not self.create:
            return False  # nothing to verify: failed this round
        return now < self._deadline(backup, now)

    def _snapshots_due(self, location, now, final):
        """Whether this round reads the location's snapshots: once for all its AMIs, when waiting longer gains nothing.

        That is when no other AMI there can still become available (the phase ends only when nothing is pending, so the
        AMIs that were available earlier are verified no later than it ends), when an available AMI's deadline has come
        (it must not fail unread), and in a call's only round (``wait=False``, check mode), which returns what it knows.
        """
        open_ = [b for b in self._members(location) if b.status == "pending"]
        awaiting = [b for b in open_ if self._awaits_snapshots(b)]
        if not awaiting:
            return False
        due = final or not any(self._may_become_available(b, now) for b in open_) or any(now >= self._deadline(b, now) for b in awaiting)
        for backup in awaiting:
            backup.deferred = not due
        return due

    def _read_snapshots(self, location):
        """One DescribeSnapshots (by the run's tags) for every available AMI of the location; tag snapshots that lack the tags."""
        members = self._members(location)
        wanted = {s for b in members if b.status == "pending" and self._awaits_snapshots(b) for s in b.snapshot_ids()}
        for snap in self._snapshots(location, wanted):
            self.snapshots[snap["SnapshotId"]] = snap
        for backup in members:
            backup.deferred = False
        untagged = sorted(s for s in wanted if s not in self.snapshots)
        if untagged and self.create and not self.check_mode:
            self._tag_snapshots(location, untagged, members)

    def _find_duplicates(self, location, backups):
        """CreateImage said the name is taken: adopt the image of that name if its tags say it is this run's backup of the instance."""
        if not backups:
            return
        by_name = {b.ami_name: b for b in backups}
        for image in self._images_named(location, by_name):
            backup = by_name.get(image.get("Name"))
            if backup is None or backup.image is not None:
                continue
            tags = _tags.as_dict(image.get("Tags"))
            if (tags.get(_tags.RUN_ID), tags.get(_tags.INSTANCE_ID), tags.get(_tags.LZ)) == (self.run_id, backup.instance_id, self.lz):
                backup.adopt(image)
                backup.created = True
                continue
            backup.status = "failed"
            backup.reason = (
                "CreateImage: the AMI name %s is already used by %s (%s), which is not this run's backup of %s; "
                "keep {instance_id} and {run_id} in name_template so names are unique per instance and run, or deregister %s"
                % (
                    backup.ami_name,
                    image["ImageId"],
                    ", ".join("%s=%s" % (k, tags[k]) for k in (_tags.RUN_ID, _tags.INSTANCE_ID, _tags.LZ) if k in tags) or "not tagged by cms.patching",
                    backup.instance_id,
                    image["ImageId"],
                )
            )

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

    def _members(self, location):
        return [self.backups[i["instance_id"]] for i in self.groups[location]]

    def poll(self, final=False):
        """One round: DescribeImages where backups are open, DescribeSnapshots where due (see _snapshots_due), then the verdicts.

        ``final``: the call returns after this round whatever it finds (no later round reads what this one leaves).
        """
        self.rounds += 1
        workers = self.options.get("max_workers", 8)
        read = []
        for outcome in fan_out(self._read_images, list(self.groups), workers):
            members = self._members(outcome.item)
            if outcome.ok:
                read.append(outcome.item)
                self.unread.discard(outcome.item)
                for backup in members:
                    if backup.create_state != "retry":
                        backup.error = None
                continue
            # A failed round says nothing about the AMIs: keep every status, remember the error for the deadline's reason.
            self.unread.add(outcome.item)
            error = "could not read AMI state in %s/%s: %s" % (outcome.item[0], outcome.item[1], describe_aws_error(outcome.error))
            for backup in members:
                backup.error = error
        # One clock for the decision and the verdicts: a snapshot read is never skipped for a deadline that the verdict then applies.
        now = self.now()
        due = [location for location in read if self._snapshots_due(location, now, final)]
        for outcome in fan_out(self._read_snapshots, due, workers):
            if not outcome.ok:
                # The images were read (creating stays safe there); only the snapshot verdicts wait for a round that reads them.
                error = "could not read snapshot state in %s/%s: %s" % (outcome.item[0], outcome.item[1], describe_aws_error(outcome.error))
                for backup in self._members(outcome.item):
                    backup.error = error
        self.evaluate_all(now)
        if self.create and not self.check_mode:
            self._tag_finished_locations(read)

    def evaluate_all(self, now=None):
        """The verdicts from what the rounds so far have read (no AWS call)."""
        now = self.now() if now is None else now
        trust = self._trusts_tag()
        for backup in self.backups.values():
            if backup.since is None:
                backup.since = now
            location = (backup.instance["account_id"], backup.instance["region"])
            if not self.create and backup.image is None and backup.status == "pending" and location not in self.unread:
                where = "run %s" % self.run_id if self.run_id else "landing zone %s" % self.lz
                backup.status, backup.reason = "failed", "no pre-patch AMI of this instance found for %s" % where
            evaluate(backup, self.snapshots, now, self._deadline(backup, now), trust_verified_tag=trust)

    def _tag_finished_locations(self, locations):
        """verified-at, as soon as nothing in a location is pending any more (once per location: a tagged AMI is not tagged again).

        A failure here is left to the end of the call (tag_verified), which tags whatever is still untagged; meanwhile the
        next round or call sees the tag missing and checks those snapshots again.
        """
        finished = [location for location in locations if self._untagged(location) and not any(b.status == "pending" for b in self._members(location))]
        # Side by side, like the reads; fan_out keeps each failure to its item.
        fan_out(lambda location: self.tag_verified([location]), finished, self.options.get("max_workers", 8))

    # -- creating -----------------------------------------------------------------------------------

    def _fields(self, inst):
        return dict(
            instance_id=inst["instance_id"],
            name=inst.get("name") or inst["instance_id"],
            run_id=self.run_id,
            lz=self.lz,
            account_id=inst["account_id"],
            region=inst["region"],
            date=datetime.datetime.fromtimestamp(self.now(), datetime.timezone.utc).strftime("%Y%m%d"),
        )

    def _create_one(self, backup):
        inst = backup.instance
        fields = self._fields(inst)
        tags = _tags.as_list(_tags.backup_tags(self.run_id, inst["instance_id"], self.lz, self.options.get("tags")))
        specs = [{"ResourceType": "image", "Tags": tags}]
        if self.options.get("snapshot_tags_on_create", True):
            specs.append({"ResourceType": "snapshot", "Tags": tags})
        ec2 = self.fleet.client("ec2", inst["account_id"], inst["region"])
        response = ec2.create_image(
            InstanceId=inst["instance_id"],
            Name=backup.ami_name,
            Description=render_name(self.options["description_template"], fields, DESCRIPTION_LIMIT, clean=False),
            NoReboot=bool(self.options.get("no_reboot", True)),
            TagSpecifications=specs,
        )
        return response["ImageId"]

    def _create_all(self, todo):
        """CreateImage for every backup of todo: each account/region with its own max_concurrent_creates threads.

        The client paces CreateImage per account and Region (EC2's mutating bucket: 50 at once, then 5 a second, see
        _pace.py), so a thread may wait there for a token; with threads of its own per location, a location that is
        throttled (or simply has more instances) never holds back another's calls.
        """
        groups = {}
        for backup in todo:
            groups.setdefault((backup.instance["account_id"], backup.instance["region"]), []).append(backup)
        per_location = self.options.get("max_concurrent_creates", 10)
        outcomes = []
        for location in fan_out(lambda loc: fan_out(self._create_one, groups[loc], per_location), sorted(groups), self.options.get("max_workers", 8)):
            if location.ok:
                outcomes.extend(location.result)
            else:  # fan_out keeps every item's error; this would be a bug in it, reported per instance all the same
                outcomes.extend(Outcome(backup, error=location.error) for backup in groups[location.item])
        return outcomes

    def create_missing(self):
        """CreateImage for every instance without an AMI in this run, max_concurrent_creates at a time per account/region.

        Only where the last look succeeded (an unread location may already hold this run's AMIs), and never for an instance whose
        name CreateImage already found taken (that image is looked up by name each round instead).
        """
        todo = [
            b
            for b in self.backups.values()
            if b.status == "pending"
            and b.image is None
            and b.create_state != "duplicate"
            and (b.instance["account_id"], b.instance["region"]) not in self.unread
        ]
        for backup in todo:
            if backup.ami_name is None:
                # The same name on every attempt: a re-sent CreateImage of an AMI that was made answers Duplicate instead of making a second.
                backup.ami_name = render_name(self.options["name_template"], self._fields(backup.instance))
        if self.check_mode:
            for backup in todo:
                backup.status, backup.reason, backup.plan = "skipped", "", "would create AMI %s" % backup.ami_name
            self.changed = self.changed or bool(todo)
            return
        now = self.now()
        duplicates = {}
        for outcome in self._create_all(todo):
            backup = outcome.item
            if backup.created_at is None:
                backup.created_at = now
            if outcome.ok:
                backup.created, backup.create_state, backup.error = True, None, None
                # A placeholder until DescribeImages shows the image (it may not, for a while).
                backup.image, backup.seen = {"ImageId": outcome.result, "State": "pending", "BlockDeviceMappings": []}, False
                self.changed = True
            elif is_error(outcome.error, DUPLICATE_NAME):
                backup.create_state = "duplicate"
                backup.note = "CreateImage: %s; looking for that image" % describe_aws_error(outcome.error)
                duplicates.setdefault((backup.instance["account_id"], backup.instance["region"]), []).append(backup)
            elif is_transient(outcome.error):
                # The AMI may have been made: look for it by tag next round, and re-send the same name if it is not there.
                backup.create_state = "retry"
                backup.error = "CreateImage failed: %s (the AMI may exist; looking for it)" % describe_aws_error(outcome.error)
                self.changed = True
            elif error_code(outcome.error) in THROTTLING_CODES:
                # Still throttled after the client's retries: AWS refused it before acting, so the next round simply asks again.
                backup.create_state = "retry"
                backup.error = "CreateImage throttled: %s (asking again next round)" % describe_aws_error(outcome.error)
            else:
                backup.status, backup.reason = "failed", "CreateImage failed: %s" % describe_aws_error(outcome.error)
        for location, backups in duplicates.items():
            try:
                self._find_duplicates(location, backups)
            except Exception as exc:  # pylint: disable=broad-except  # the next poll round looks again
                for backup in backups:
                    backup.error = "could not look up AMI %s: %s" % (backup.ami_name, describe_aws_error(exc))

    def _untagged(self, location):
        return [b for b in self._members(location) if b.status == "verified" and _tags.VERIFIED_AT not in _tags.as_dict(b.image.get("Tags"))]

    def tag_verified(self, locations=None):
        """Mark verified AMIs so the patch gate (and people) can tell them from unverified ones; up to 1,000 a CreateTags."""
        if self.check_mode:
            return
        stamp = datetime.datetime.fromtimestamp(self.now(), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for location in self.groups if locations is None else locations:
            untagged = self._untagged(location)
            if not untagged:
                continue
            ec2 = self.fleet.client("ec2", *location)
            for chunk in chunks(untagged, TAG_BATCH):
                ec2.create_tags(Resources=[b.image["ImageId"] for b in chunk], Tags=[{"Key": _tags.VERIFIED_AT, "Value": stamp}])
                self.changed = True
                for backup in chunk:
                    # As AWS now has it: the end of the call does not tag it again.
                    backup.image["Tags"] = list(backup.image.get("Tags") or []) + [{"Key": _tags.VERIFIED_AT, "Value": stamp}]

    # -- the whole call ----------------------------------------------------------------------------

    def pending(self):
        return [b for b in self.backups.values() if b.status == "pending"]

    def run(self, create=True, wait=True, progress_interval=0):
        """Find, create, and poll until done, the deadline, or progress_interval seconds (then return to be called again)."""
        self.create = create
        for location, members in self.groups.items():
            self._fill_volumes(location, [self.backups[i["instance_id"]] for i in members])
        # A call that returns after one round reads what it can in that round (see _snapshots_due).
        self.poll(final=not wait or self.check_mode)
        if self.foreign:
            raise FleetError(_foreign_message(self.run_id, self.lz, self.foreign))
        if create:
            self.create_missing()
            # No look right after creating: an AMI takes minutes on AWS (5 to 30 in the sandbox's aws profile), so a round
            # now would find every new image pending or not visible yet, at a DescribeImages per location.  The verdicts are
            # brought up to date without one (a placeholder is "created; not visible yet"), and the first round comes after
            # poll_interval; an AMI whose CreateImage answer was lost is looked for by tag in that round, before any new create.
            self.evaluate_all()
        started = self.clock()
        while self.pending():
            if not wait or self.check_mode or progress_ends(self.clock() - started, progress_interval, self.options["poll_interval"], self.sleep):
                break
            self.sleep(self.options["poll_interval"])
            self.poll()
            if create:
                # Instances whose CreateImage failed in a way that leaves its outcome unknown, or whose location could not be read.
                self.create_missing()
        if create and not self.pending():
            # The rounds tagged each location as it finished; this tags what a failed CreateTags there left (and fails the call
            # if it fails again: the patch gate needs the tag).  A call that returns for progress leaves an unfinished
            # location untagged: its AMIs are verified (and tagged) by the call in which nothing there is pending any more.
            self.tag_verified()
        now = self.now()
        return [self.backups[i["instance_id"]].result(now) for members in self.groups.values() for i in members]
