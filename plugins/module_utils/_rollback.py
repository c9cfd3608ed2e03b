# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Recovery: put instances back on their verified pre-patch AMI of a run - every EBS volume, same instance.

The instance keeps its ID, network interfaces, addresses and tags.  Per instance:

1. **Gate** - only an AMI of the given run, tagged for this instance, in its account and region, ``available``,
   tagged ``cms:patching:verified-at``, whose snapshots are all ``completed`` and which covers the root device.
   Anything else: the instance is not touched, the reason is reported.
2. **Data volumes restored** - ``CreateVolume`` from the AMI's snapshot of each data device, in the instance's
   Availability Zone, with the current volume's type, size (at least the snapshot's), IOPS, throughput,
   encryption and KMS key; tagged at creation, with a ClientToken per run/instance/device.  Nothing on the
   instance changes yet: a failure here leaves it as it was.
3. **Root volume** - ``CreateReplaceRootVolumeTask`` with the AMI's ``ImageId`` (the instance must be running; EC2
   reboots it and keeps the old root volume, ``DeleteReplacedRootVolume`` false).  Its ClientToken is derived
   from run + instance, so a retry or a resumed run never starts a second task.  A failed task leaves the
   original root volume attached (EC2 API reference, ReplaceRootVolumeTask ``failed``).
4. **Swap** (only with data volumes): the old data volumes are tagged ``cms:patching:replaced-by-rollback`` first,
   then the instance is stopped, they are detached, the restored ones attached at the same devices, and the
   instance started.  A failed attach puts the old volume back on its device; the instance is left stopped and
   startable, the old volumes intact (tagged, never deleted).
5. **Post-checks** - the patching phase's health checks (``_checks.HealthChecks``).

Everything is found again from AWS on every round (tags, tasks, attachments), so a second call with the same
run ID resumes where the first stopped and an instance already rolled back is recognised, not rolled back twice.
Each round costs one DescribeInstances, one DescribeVolumes and one DescribeReplaceRootVolumeTasks per
account/region; at most ``max_concurrent`` instances per account/region are being rolled back at once.

AWS pages: EC2 API reference CreateReplaceRootVolumeTask, DescribeReplaceRootVolumeTasks, ReplaceRootVolumeTask,
CreateVolume (ClientToken, Iops/Throughput per type), AttachVolume, DetachVolume, StopInstances, StartInstances;
"Ensuring idempotency in Amazon EC2 API requests"; EC2 user guide "Replace a root volume".
"""

import datetime
import hashlib
import time

from ansible_collections.cms.patching.plugins.module_utils import _tags
from ansible_collections.cms.patching.plugins.module_utils._batching import by_location, chunks
from ansible_collections.cms.patching.plugins.module_utils._checks import HealthChecks
from ansible_collections.cms.patching.plugins.module_utils._fanout import fan_out
from ansible_collections.cms.patching.plugins.module_utils._patch import LOOKUP_MARGIN, aws_time
from ansible_collections.cms.patching.plugins.module_utils._retry import is_transient, paginate
from ansible_collections.cms.patching.plugins.module_utils._runcommand import CommandBatch, send_all
from ansible_collections.cms.patching.plugins.module_utils._session import describe_aws_error

ROLLBACK_RUN = "cms:patching:rollback-run-id"
RESTORED_BY = "cms:patching:restored-by-rollback"
REPLACED_BY = "cms:patching:replaced-by-rollback"
REPLACED_AT = "cms:patching:replaced-at"
DEVICE = "cms:patching:rollback-device"
SOURCE_SNAPSHOT = "cms:patching:rollback-source"
ORIGINAL_OF = "cms:patching:original-of-rollback"

ACTIVE_TASK_STATES = ("pending", "in-progress", "failing", "failing-detached")
FAILED_TASK_STATES = ("failed", "failed-detached")
IOPS_TYPES = ("io1", "io2", "gp3")
THROUGHPUT_TYPES = ("gp3",)
ID_BATCH = 200
FINAL = ("rolled_back", "failed", "skipped")


def client_token(kind, run_id, instance_id, device="", attempt=0):
    """A ClientToken (EC2 allows 64 characters) that is the same for the same run, instance, device and attempt."""
    digest = hashlib.sha256("|".join([kind, run_id, instance_id, device, str(attempt)]).encode()).hexdigest()
    return "cms-rb-%s" % digest[:48]


# -- the rules (pure: no AWS) ------------------------------------------------------------------------------


def gate(image, snapshots, instance_id, run_id, root_device):
    """'' when the AMI may be restored onto the instance, else the reason it may not."""
    if image is None:
        return "no AMI of run %s for this instance" % run_id
    tags = _tags.as_dict(image.get("Tags"))
    if tags.get(_tags.RUN_ID) != run_id or tags.get(_tags.INSTANCE_ID) != instance_id:
        return "AMI %s is not the backup of %s in run %s" % (image["ImageId"], instance_id, run_id)
    if image.get("State") != "available":
        return "AMI %s is %s, not available" % (image["ImageId"], image.get("State"))
    if _tags.VERIFIED_AT not in tags:
        return "AMI %s was never verified (no %s tag): its backup did not pass the gate" % (image["ImageId"], _tags.VERIFIED_AT)
    mappings = [m for m in image.get("BlockDeviceMappings", []) if "Ebs" in m]
    if not mappings:
        return "AMI %s has no EBS snapshot" % image["ImageId"]
    for mapping in mappings:
        snap_id = mapping["Ebs"].get("SnapshotId")
        snap = snapshots.get(snap_id) if snap_id else None
        if snap is None:
            return "snapshot %s of %s in AMI %s not found" % (snap_id or "(none)", mapping.get("DeviceName"), image["ImageId"])
        if snap.get("State") != "completed":
            return "snapshot %s of %s is %s, not completed" % (snap_id, mapping.get("DeviceName"), snap.get("State"))
    if root_device and root_device not in {m.get("DeviceName") for m in mappings}:
        return "AMI %s has no snapshot of the root device %s" % (image["ImageId"], root_device)
    return ""


def volume_plan(image, snapshots, instance, volumes):
    """(devices, uncovered): one entry per AMI device (the new volume's settings), and the attached volumes the AMI lacks.

    ``instance`` is a DescribeInstances item, ``volumes`` {volume id: DescribeVolumes item} of its current volumes.
    The new volume takes the current volume's type, IOPS, throughput, encryption and KMS key, and the larger of its
    size and the snapshot's (a volume grown after the backup keeps its size; a volume cannot be smaller than its snapshot).
    """
    root = instance.get("RootDeviceName")
    attached = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if m.get("Ebs")}
    devices = []
    for mapping in image.get("BlockDeviceMappings", []):
        ebs = mapping.get("Ebs")
        if not ebs:
            continue
        device = mapping["DeviceName"]
        current = volumes.get(attached.get(device, ""), {})
        snap = snapshots.get(ebs["SnapshotId"], {})
        volume_type = current.get("VolumeType") or ebs.get("VolumeType") or "gp3"
        encrypted = bool(current.get("Encrypted") or snap.get("Encrypted") or ebs.get("Encrypted"))
        entry = {
            "device": device,
            "root": device == root,
            "current_volume_id": attached.get(device, ""),
            "snapshot_id": ebs["SnapshotId"],
            "size": max(int(current.get("Size") or 0), int(snap.get("VolumeSize") or ebs.get("VolumeSize") or 0)),
            "volume_type": volume_type,
            # A device with nothing attached now takes what the AMI's mapping says.
            "iops": (current.get("Iops") or ebs.get("Iops")) if volume_type in IOPS_TYPES else None,
            "throughput": (current.get("Throughput") or ebs.get("Throughput")) if volume_type in THROUGHPUT_TYPES else None,
            "encrypted": encrypted,
            "kms_key_id": (current.get("KmsKeyId") or snap.get("KmsKeyId")) if encrypted else None,
        }
        devices.append(entry)
    covered = {d["device"] for d in devices}
    uncovered = [{"device": dev, "volume_id": vol} for dev, vol in sorted(attached.items()) if dev not in covered]
    return devices, uncovered


def describe_plan(ami_id, devices, uncovered):
    """The check-mode line: the AMI and each volume to replace (device, current volume, snapshot, size, type, encryption)."""
    parts = []
    for d in devices:
        how = "root volume by CreateReplaceRootVolumeTask" if d["root"] else "CreateVolume + swap"
        parts.append(
            "%s %s <- %s (%d GiB %s%s%s, %s)"
            % (
                d["device"],
                d["current_volume_id"] or "(none attached)",
                d["snapshot_id"],
                d["size"],
                d["volume_type"],
                ", encrypted" if d["encrypted"] else ", not encrypted",
                " with %s" % d["kms_key_id"] if d["kms_key_id"] else "",
                how,
            )
        )
    text = "would roll back to %s: %s" % (ami_id, "; ".join(parts))
    if any(not d["root"] for d in devices):
        text += "; the instance would be stopped and started to swap its data volumes"
    if uncovered:
        text += "; left attached (not in the AMI): %s" % ", ".join("%s %s" % (u["device"], u["volume_id"]) for u in uncovered)
    return text


class Rollback:
    """One instance's rollback during a module run: its plan, and what this run did (AWS holds the rest)."""

    def __init__(self, instance):
        self.instance = instance
        self.status = "pending"  # pending -> rolled_back | failed | skipped
        self.reason = ""
        self.plan = ""
        self.image = None
        self.devices = []
        self.uncovered = []
        self.zone = ""
        self.admitted = False
        self.created = {}  # device -> new volume id created by this run
        self.tasks_started = set()  # root task IDs this run created
        self.start_requested = False
        self.stop_requested = False
        self.step = "gate"
        self.task_id = ""
        self.old_by_device = {}  # device -> the volume that was there before (tagged ORIGINAL_OF)
        self.new_by_device = {}  # device -> the restored volume
        self.already = False
        self.post_checks = {}
        self.rescan = ""

    @property
    def instance_id(self):
        return self.instance["instance_id"]

    def fail(self, reason):
        self.status, self.reason = "failed", reason


def decide(rb, run_id, obs):
    """The next actions for one instance from what AWS shows now (pure, so resume and ordering are testable).

    ``obs``: ``instance`` (DescribeInstances item), ``volumes`` (this run's tagged volumes, {id: item}),
    ``tasks`` (this instance's replacement tasks). Returns a list of actions, carried out in order:
    ("create_volume", device, attempt), ("mark_old", [(volume id, device)]), ("root_task", attempt), ("stop",),
    ("detach", volume id, device), ("attach", volume id, device), ("start",), ("mark_replaced", [(volume id, device)]),
    ("wait", why), ("done",), ("fail", why).
    """
    instance = obs["instance"]
    if instance is None:
        return [("fail", "instance %s not found" % rb.instance_id)]
    state = instance.get("State", {}).get("Name")
    iid = rb.instance_id
    data = [d for d in rb.devices if not d["root"]]
    root = next(d for d in rb.devices if d["root"])
    attached = {m["DeviceName"]: m["Ebs"] for m in instance.get("BlockDeviceMappings", []) if m.get("Ebs")}
    ours = [v for v in obs["volumes"].values() if _tag(v, _tags.INSTANCE_ID) == iid]
    originals = {_tag(v, DEVICE): v for v in ours if _tag(v, ORIGINAL_OF) == run_id}
    for device, volume in originals.items():
        rb.old_by_device[device] = volume["VolumeId"]

    # 1. Restored data volumes, found by tag (a resumed run reuses those of the first); nothing on the instance changes yet.
    new, creates = {}, []
    for d in data:
        mine = [v for v in ours if _tag(v, RESTORED_BY) == run_id and _tag(v, DEVICE) == d["device"]]
        usable = [v for v in mine if v.get("State") in ("creating", "available", "in-use")]
        broken = {v["VolumeId"] for v in mine if v.get("State") == "error"}
        created = rb.created.get(d["device"])
        if usable:
            new[d["device"]] = sorted(usable, key=lambda v: str(v.get("CreateTime", "")))[-1]
        elif created in broken:
            return [("fail", "volume %s restored from %s for %s is in state error; the instance was not touched" % (created, d["snapshot_id"], d["device"]))]
        elif created:
            new[d["device"]] = {"VolumeId": created, "State": "creating"}  # made, not visible yet
        else:
            creates.append(("create_volume", d["device"], len(broken)))
    if creates:
        return creates
    creating = sorted(v["VolumeId"] for v in new.values() if v.get("State") == "creating")
    if creating:
        return [("wait", "restored volume(s) %s creating" % ", ".join(creating))]

    # 2. The root volume: one task per run and instance (a failed one is retried only by a later call).
    tasks = [t for t in obs["tasks"] if _tag(t, ROLLBACK_RUN) == run_id]
    succeeded = [t for t in tasks if t.get("TaskState") == "succeeded"]
    if not succeeded:
        active = [t for t in tasks if t.get("TaskState") in ACTIVE_TASK_STATES]
        if active:
            rb.task_id = active[-1]["ReplaceRootVolumeTaskId"]
            return [("wait", "root volume replacement %s is %s" % (rb.task_id, active[-1]["TaskState"]))]
        failed = [t for t in tasks if t.get("TaskState") in FAILED_TASK_STATES]
        mine = [t for t in failed if t["ReplaceRootVolumeTaskId"] in rb.tasks_started]
        if mine:
            rb.task_id = mine[-1]["ReplaceRootVolumeTaskId"]
            return [
                (
                    "fail",
                    "root volume replacement %s is %s: the original root volume is still attached, the data volumes were not touched"
                    % (rb.task_id, mine[-1]["TaskState"]),
                )
            ]
        if rb.tasks_started:
            return [("wait", "root volume replacement task not visible yet")]
        if state != "running":
            return [("fail", "instance is %s: CreateReplaceRootVolumeTask needs a running instance; start it and run the rollback again" % state)]
        actions = []
        current_root = attached.get(root["device"], {}).get("VolumeId")
        if current_root and root["device"] not in originals:
            actions.append(("mark_old", [(current_root, root["device"])]))
        return actions + [("root_task", len(failed))]
    rb.task_id = succeeded[-1]["ReplaceRootVolumeTaskId"]
    rb.new_by_device[root["device"]] = attached.get(root["device"], {}).get("VolumeId", "")

    # 3. The data volumes: mark the old ones, stop, detach, attach, start.
    for d in data:
        rb.new_by_device[d["device"]] = new[d["device"]]["VolumeId"]
    pending_swap = [d for d in data if attached.get(d["device"], {}).get("VolumeId") != new[d["device"]]["VolumeId"]]
    to_mark = [(attached[d["device"]]["VolumeId"], d["device"]) for d in pending_swap if d["device"] in attached and d["device"] not in originals]
    replaced = [
        (v["VolumeId"], device)
        for device, v in sorted(originals.items())
        if _tag(v, REPLACED_BY) != run_id and attached.get(device, {}).get("VolumeId") != v["VolumeId"]
    ]
    if not pending_swap:
        attaching = [d["device"] for d in data if attached.get(d["device"], {}).get("Status") == "attaching"]
        if attaching:
            return [("wait", "attaching %s" % ", ".join(attaching))]
        finish = [("mark_replaced", replaced)] if replaced else []
        if state == "running":
            return finish + [("done",)]
        if state == "stopped":
            if rb.start_requested:
                why = instance.get("StateReason", {}).get("Message") or "no reason given"
                return finish + [
                    (
                        "fail",
                        "the instance did not start after its volumes were swapped (%s): it is stopped and startable with the "
                        "restored volumes; the old ones are detached and tagged %s=%s" % (why, REPLACED_BY, run_id),
                    )
                ]
            return finish + [("start",)]
        return [("wait", "instance is %s" % state)]
    actions = [("mark_old", to_mark)] if to_mark else []
    if state == "running":
        return actions + [("stop",)]
    if state != "stopped":
        return actions + [("wait", "instance is %s" % state)]
    for d in pending_swap:
        current = attached.get(d["device"])
        old = originals.get(d["device"])
        if current is not None:
            if current.get("Status") in ("attached", "attaching"):
                actions.append(("detach", current["VolumeId"], d["device"]))
            else:
                actions.append(("wait", "%s at %s is %s" % (current["VolumeId"], d["device"], current.get("Status"))))
        elif old is not None and any(a.get("State") == "detaching" for a in old.get("Attachments", [])):
            actions.append(("wait", "old volume %s at %s is detaching" % (old["VolumeId"], d["device"])))
        else:
            actions.append(("attach", new[d["device"]]["VolumeId"], d["device"]))
    return actions


def _tag(resource, key):
    return _tags.as_dict((resource or {}).get("Tags")).get(key)


# -- the fleet run ---------------------------------------------------------------------------------------


class RollbackRun:
    """Gate, plan and roll back a batch of instances to their verified AMI of ``run_id``."""

    def __init__(self, fleet, instances, run_id, options, check_mode=False, clock=time.time, sleep=time.sleep):
        self.fleet = fleet
        self.run_id = run_id
        self.options = options
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.rollbacks = {i["instance_id"]: Rollback(i) for i in instances}
        self.groups = by_location(instances)
        self.rounds = 0
        self.changed = False

    # -- reads ----------------------------------------------------------------------------------------

    def _describe_instances(self, location, ids):
        ec2 = self.fleet.client("ec2", *location)
        found = {}
        for chunk in chunks(ids, ID_BATCH):
            for reservation in paginate(ec2.describe_instances, "Reservations", Filters=[{"Name": "instance-id", "Values": chunk}], MaxResults=1000):
                for inst in reservation.get("Instances", []):
                    found[inst["InstanceId"]] = inst
        return found

    def _prepare_location(self, location):
        """The gate and the plan of every instance here: images, snapshots, instances and their current volumes."""
        members = [self.rollbacks[i["instance_id"]] for i in self.groups[location]]
        ec2 = self.fleet.client("ec2", *location)
        images = {}
        for image in paginate(ec2.describe_images, "Images", Owners=["self"], Filters=[_tags.tag_filter(_tags.RUN_ID, self.run_id)], MaxResults=1000):
            owner = _tag(image, _tags.INSTANCE_ID)
            if owner in self.rollbacks and (owner not in images or image.get("CreationDate", "") > images[owner].get("CreationDate", "")):
                images[owner] = image
        snapshots = {}
        wanted = sorted({m["Ebs"]["SnapshotId"] for img in images.values() for m in img.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")})
        for chunk in chunks(wanted, ID_BATCH):
            for snap in paginate(ec2.describe_snapshots, "Snapshots", OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": chunk}], MaxResults=1000):
                snapshots[snap["SnapshotId"]] = snap
        found = self._describe_instances(location, [rb.instance_id for rb in members])
        current = sorted({m["Ebs"]["VolumeId"] for inst in found.values() for m in inst.get("BlockDeviceMappings", []) if m.get("Ebs")})
        volumes = {}
        for chunk in chunks(current, ID_BATCH):
            for vol in paginate(ec2.describe_volumes, "Volumes", Filters=[{"Name": "volume-id", "Values": chunk}], MaxResults=500):
                volumes[vol["VolumeId"]] = vol
        for rb in members:
            inst = found.get(rb.instance_id)
            if inst is None:
                rb.status, rb.reason = "failed", "instance %s not found in %s/%s" % (rb.instance_id, location[0], location[1])
                continue
            rb.image = images.get(rb.instance_id)
            rb.zone = inst.get("Placement", {}).get("AvailabilityZone", "")
            reason = gate(rb.image, snapshots, rb.instance_id, self.run_id, inst.get("RootDeviceName"))
            if reason:
                rb.status, rb.reason = "skipped", reason
                continue
            rb.devices, rb.uncovered = volume_plan(rb.image, snapshots, inst, volumes)
            rb.plan = describe_plan(rb.image["ImageId"], rb.devices, rb.uncovered)

    def _observe_location(self, location, open_):
        ec2 = self.fleet.client("ec2", *location)
        instances = self._describe_instances(location, [rb.instance_id for rb in open_])
        volumes = {v["VolumeId"]: v for v in paginate(ec2.describe_volumes, "Volumes", Filters=[_tags.tag_filter(ROLLBACK_RUN, self.run_id)], MaxResults=500)}
        tasks = {}
        for chunk in chunks([rb.instance_id for rb in open_], ID_BATCH):
            for task in paginate(
                ec2.describe_replace_root_volume_tasks, "ReplaceRootVolumeTasks", Filters=[{"Name": "instance-id", "Values": chunk}], MaxResults=50
            ):
                tasks.setdefault(task["InstanceId"], []).append(task)
        for found in tasks.values():
            found.sort(key=lambda t: str(t.get("StartTime", "")))
        return {rb.instance_id: {"instance": instances.get(rb.instance_id), "volumes": volumes, "tasks": tasks.get(rb.instance_id, [])} for rb in open_}

    # -- writes ---------------------------------------------------------------------------------------

    def _new_volume_tags(self, rb, device, snapshot_id):
        return {
            ROLLBACK_RUN: self.run_id,
            RESTORED_BY: self.run_id,
            _tags.INSTANCE_ID: rb.instance_id,
            DEVICE: device,
            SOURCE_SNAPSHOT: snapshot_id,
            "Name": "%s %s restored by rollback %s" % (rb.instance.get("name") or rb.instance_id, device, self.run_id),
        }

    def _act(self, job):
        """Carry out one action for one instance; returns None or a failure reason."""
        rb, action = job
        location = (rb.instance["account_id"], rb.instance["region"])
        ec2 = self.fleet.client("ec2", *location)
        kind = action[0]
        try:
            if kind == "create_volume":
                device = next(d for d in rb.devices if d["device"] == action[1])
                request = dict(
                    AvailabilityZone=rb.zone,
                    SnapshotId=device["snapshot_id"],
                    Size=device["size"],
                    VolumeType=device["volume_type"],
                    ClientToken=client_token("volume", self.run_id, rb.instance_id, device["device"], action[2]),
                    TagSpecifications=[{"ResourceType": "volume", "Tags": _tags.as_list(self._new_volume_tags(rb, device["device"], device["snapshot_id"]))}],
                )
                if device["iops"]:
                    request["Iops"] = device["iops"]
                if device["throughput"]:
                    request["Throughput"] = device["throughput"]
                if device["encrypted"]:
                    request["Encrypted"] = True
                    if device["kms_key_id"]:
                        request["KmsKeyId"] = device["kms_key_id"]
                rb.created[device["device"]] = ec2.create_volume(**request)["VolumeId"]
            elif kind == "root_task":
                task = ec2.create_replace_root_volume_task(
                    InstanceId=rb.instance_id,
                    ImageId=rb.image["ImageId"],
                    DeleteReplacedRootVolume=False,
                    ClientToken=client_token("root", self.run_id, rb.instance_id, "", action[1]),
                    TagSpecifications=[
                        {"ResourceType": "replace-root-volume-task", "Tags": _tags.as_list({ROLLBACK_RUN: self.run_id, _tags.INSTANCE_ID: rb.instance_id})}
                    ],
                )["ReplaceRootVolumeTask"]
                rb.tasks_started.add(task["ReplaceRootVolumeTaskId"])
                rb.task_id = task["ReplaceRootVolumeTaskId"]
            elif kind == "mark_old":
                # Before anything changes: the volume can always be found again (by a person, or by a resumed run).
                for volume_id, device in action[1]:
                    ec2.create_tags(
                        Resources=[volume_id],
                        Tags=_tags.as_list({ROLLBACK_RUN: self.run_id, ORIGINAL_OF: self.run_id, _tags.INSTANCE_ID: rb.instance_id, DEVICE: device}),
                    )
                    rb.old_by_device[device] = volume_id
            elif kind == "mark_replaced":
                # AWS's time (from its answers), so the stamp agrees with the volumes' own timestamps.
                now = self.fleet.server_clock.now() or self.clock()
                stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                ec2.create_tags(Resources=[v for v, _d in action[1]], Tags=_tags.as_list({REPLACED_BY: self.run_id, REPLACED_AT: stamp}))
            elif kind == "stop":
                ec2.stop_instances(InstanceIds=[rb.instance_id])
                rb.stop_requested = True
            elif kind == "detach":
                ec2.detach_volume(VolumeId=action[1], InstanceId=rb.instance_id, Device=action[2])
            elif kind == "attach":
                try:
                    ec2.attach_volume(VolumeId=action[1], InstanceId=rb.instance_id, Device=action[2])
                except Exception as exc:  # pylint: disable=broad-except
                    if is_transient(exc):
                        raise
                    return self._put_back(ec2, rb, action[2], "attaching %s at %s failed: %s" % (action[1], action[2], describe_aws_error(exc)))
            elif kind == "start":
                ec2.start_instances(InstanceIds=[rb.instance_id])
                rb.start_requested = True
        except Exception as exc:  # pylint: disable=broad-except
            if is_transient(exc):
                # The call may have taken effect: the next round sees what it did (every write here is idempotent or found again).
                return None
            return "%s failed: %s" % (kind, describe_aws_error(exc))
        self.changed = True
        return None

    def _put_back(self, ec2, rb, device, reason):
        """A restored volume would not attach: the old one goes back on its device, so the instance stays as it was there."""
        old = rb.old_by_device.get(device, "")
        if not old:
            return reason + "; nothing to put back at %s" % device
        try:
            ec2.attach_volume(VolumeId=old, InstanceId=rb.instance_id, Device=device)
        except Exception as exc:  # pylint: disable=broad-except
            return reason + "; putting the old volume %s back failed too (%s): it is detached and tagged %s" % (old, describe_aws_error(exc), REPLACED_BY)
        return reason + "; the old volume %s is attached again at %s" % (old, device)

    # -- rounds ---------------------------------------------------------------------------------------

    def _admit(self, observations):
        """At most max_concurrent instances per account/region in flight; those AWS shows mid-rollback go first."""
        limit = self.options.get("max_concurrent", 5)
        for location, members in self.groups.items():
            open_ = [self.rollbacks[i["instance_id"]] for i in members if self.rollbacks[i["instance_id"]].status == "pending"]
            busy = sum(1 for rb in open_ if rb.admitted)
            started = [rb for rb in open_ if not rb.admitted and self._in_flight(rb, observations.get(rb.instance_id))]
            for rb in started + [rb for rb in open_ if not rb.admitted and rb not in started]:
                if busy >= limit:
                    break
                rb.admitted = True
                busy += 1

    def _in_flight(self, rb, obs):
        if not obs:
            return False
        return bool([t for t in obs["tasks"] if _tag(t, ROLLBACK_RUN) == self.run_id]) or any(
            _tag(v, _tags.INSTANCE_ID) == rb.instance_id for v in obs["volumes"].values()
        )

    def _round(self):
        self.rounds += 1
        observations = {}
        locations = [loc for loc, members in self.groups.items() if any(self.rollbacks[i["instance_id"]].status == "pending" for i in members)]

        def observe(location):
            open_ = [self.rollbacks[i["instance_id"]] for i in self.groups[location] if self.rollbacks[i["instance_id"]].status == "pending"]
            return self._observe_location(location, open_)

        for outcome in fan_out(observe, locations, self.options.get("max_workers", 8)):
            if not outcome.ok:
                for item in self.groups[outcome.item]:
                    rb = self.rollbacks[item["instance_id"]]
                    if rb.status == "pending":
                        rb.fail("could not read the rollback state in %s/%s: %s" % (outcome.item[0], outcome.item[1], describe_aws_error(outcome.error)))
                continue
            observations.update(outcome.result)
        self._admit(observations)
        jobs = []
        for rb in self.rollbacks.values():
            if rb.status != "pending" or not rb.admitted or rb.instance_id not in observations:
                continue
            actions = decide(rb, self.run_id, observations[rb.instance_id])
            rb.step = actions[0][0] if actions else "wait"
            for action in actions:
                if action[0] == "done":
                    rb.status, rb.step, rb.reason = "rolled_back", "done", ""
                    rb.already = rb.already or not (rb.created or rb.tasks_started or rb.stop_requested or rb.start_requested)
                elif action[0] == "fail":
                    rb.fail(action[1])
                elif action[0] == "wait":
                    rb.reason = action[1]
                else:
                    jobs.append((rb, action))
        # Ordered per instance: tag before stop, detach before attach; instances and accounts run side by side.
        by_instance = {}
        for rb, action in jobs:
            by_instance.setdefault(rb.instance_id, []).append((rb, action))

        def run_all(items):
            for job in items:
                reason = self._act(job)
                if reason:
                    job[0].fail(reason)
                    return

        fan_out(run_all, list(by_instance.values()), self.options.get("max_workers", 8))

    def pending(self):
        return [rb for rb in self.rollbacks.values() if rb.status == "pending"]

    def _check_already(self):
        """Check mode: one look at AWS tells an instance already rolled back for this run from one that would be."""
        locations = [loc for loc, members in self.groups.items() if any(self.rollbacks[i["instance_id"]].status == "pending" for i in members)]

        def observe(location):
            open_ = [self.rollbacks[i["instance_id"]] for i in self.groups[location] if self.rollbacks[i["instance_id"]].status == "pending"]
            return self._observe_location(location, open_)

        for outcome in fan_out(observe, locations, self.options.get("max_workers", 8)):
            for instance_id, obs in (outcome.result or {}).items() if outcome.ok else ():
                rb = self.rollbacks[instance_id]
                actions = [a[0] for a in decide(rb, self.run_id, obs)]
                if "done" in actions:
                    rb.plan = "already rolled back to %s for run %s: nothing to do" % (rb.image["ImageId"], self.run_id)
                elif self._in_flight(rb, obs):
                    rb.plan = "rollback to %s already under way (would continue at: %s); %s" % (rb.image["ImageId"], actions[0] if actions else "wait", rb.plan)

    def run(self, wait=True, progress_interval=0):
        for outcome in fan_out(self._prepare_location, list(self.groups), self.options.get("max_workers", 8)):
            if not outcome.ok:
                for item in self.groups[outcome.item]:
                    rb = self.rollbacks[item["instance_id"]]
                    if rb.status == "pending":
                        rb.fail("could not read the backups in %s/%s: %s" % (outcome.item[0], outcome.item[1], describe_aws_error(outcome.error)))
        if self.check_mode:
            self._check_already()
            for rb in self.pending():
                rb.status = "skipped"
            return self.results()
        started = self.clock()
        deadline = started + self.options.get("wait_timeout", 3600)
        while self.pending():
            self._round()
            if not self.pending() or not wait:
                break
            if progress_interval and self.clock() - started >= progress_interval:
                break
            if self.clock() >= deadline:
                for rb in self.pending():
                    rb.fail("not rolled back within wait_timeout (at step %s: %s); run again with the same run_id to resume" % (rb.step, rb.reason))
                break
            self.sleep(self.options.get("poll_interval", 15))
        self._post_checks()
        self._rescan()
        return self.results()

    def _command_options(self):
        """The options of the rescan and post-check commands: the run's landing zone (their comments name it) and, per
        location, where ListCommands starts on AWS's clock - before the run's AMIs there, so a resumed call finds the
        commands it already sent and sends none twice (the controller's clock may be off; AWS's is the one that counts)."""
        options = dict(self.options)
        with_image = [rb for rb in self.rollbacks.values() if rb.image]
        # A run ID belongs to one landing zone: its AMIs carry the name when the caller does not give it.
        options["lz"] = options.get("lz") or next((_tag(rb.image, _tags.LZ) for rb in with_image if _tag(rb.image, _tags.LZ)), "")
        now = self.fleet.server_clock.now() or self.clock()
        since = {}
        for location in self.groups:
            created = [aws_time(rb.image.get("CreationDate")) for rb in with_image if (rb.instance["account_id"], rb.instance["region"]) == location]
            created = [t for t in created if t is not None]
            since[location] = min(created) - LOOKUP_MARGIN if created else now - options.get("lookback_hours", 168) * 3600
        options["since"] = since
        return options

    def _rescan(self):
        """AWS-RunPatchBaseline Scan on the rolled-back instances: SSM's compliance then describes the restored machine.

        SSM keeps what the agent last reported - the patched state - until the next scan (DescribeInstancePatchStates,
        "About patch compliance"): without this, compliance reports would show patches a rolled-back instance no longer has.
        """
        # Also those whose post-checks failed: their volumes are the restored ones all the same.
        done = [rb for rb in self.rollbacks.values() if rb.step == "done"]
        if not self.options.get("rescan") or not done:
            return
        options = self._command_options()
        targets = [rb.instance_id for rb in done]
        batch = CommandBatch(
            self.fleet, "AWS-RunPatchBaseline", {"Operation": ["Scan"]}, self.run_id, options["lz"], "rollback rescan", options, targets=targets
        )
        locations = sorted({(rb.instance["account_id"], rb.instance["region"]) for rb in done})
        deadline = self.clock() + options.get("rescan_timeout", 1800)
        # Each round lists first and sends only where the listing answered and shows no scan of this rollback yet.
        while True:
            batch.refresh(locations, options["since"])
            batch.collect_finished()
            sent = batch.send_calls
            send_all(batch, [rb.instance for rb in done if not batch.has_command(rb.instance_id)])
            self.changed = self.changed or batch.send_calls > sent
            if all(batch.outcome(rb.instance_id)[0] != "pending" for rb in done) or self.clock() >= deadline:
                break
            self.sleep(options.get("poll_interval", 15))
        for rb in done:
            status, error, _command_id = batch.outcome(rb.instance_id)
            # The machine is back either way: a scan that did not finish is reported, it does not undo the rollback.
            rb.rescan = status if status in ("success", "pending") else "%s: %s" % (status, error)

    def _post_checks(self):
        spec = self.options.get("post_checks") or {}
        done = [rb for rb in self.rollbacks.values() if rb.status == "rolled_back"]
        if not done or not spec:
            return
        checks = HealthChecks(
            self.fleet, spec, self.run_id, "rollback post-check", self._command_options(), lambda: self.fleet.server_clock.now() or self.clock(), self.sleep
        )
        for instance_id, result in checks.run([rb.instance for rb in done], settle=True).items():
            rb = self.rollbacks[instance_id]
            rb.post_checks = result
            if result["status"] == "failed":
                rb.fail("rolled back, but the post-checks failed: %s" % result["reason"])

    def results(self):
        out = []
        for members in self.groups.values():
            for item in members:
                rb = self.rollbacks[item["instance_id"]]
                volumes = [
                    {"device": d["device"], "old_volume_id": rb.old_by_device.get(d["device"], ""), "new_volume_id": rb.new_by_device.get(d["device"], "")}
                    for d in rb.devices
                    if rb.new_by_device.get(d["device"])
                ]
                final = rb.status in FINAL
                out.append(
                    {
                        "instance_id": rb.instance_id,
                        "account_id": rb.instance["account_id"],
                        "region": rb.instance["region"],
                        "name": rb.instance.get("name", ""),
                        "ami_id": (rb.image or {}).get("ImageId", ""),
                        "rollback_status": rb.status,
                        "rollback_volumes": volumes,
                        "rollback_volumes_text": "; ".join("%s: %s -> %s" % (v["device"], v["old_volume_id"] or "(none)", v["new_volume_id"]) for v in volumes),
                        "root_task_id": rb.task_id,
                        "left_attached": rb.uncovered,
                        "already_rolled_back": rb.already and rb.status == "rolled_back",
                        "plan": rb.plan if self.check_mode and rb.plan else "",
                        "error": rb.reason if rb.status in ("failed", "skipped") and not (self.check_mode and rb.plan) else ("" if final else rb.reason),
                        "step": rb.step,
                        "post_checks": rb.post_checks,
                        "rescan": rb.rescan,
                    }
                )
        return out
