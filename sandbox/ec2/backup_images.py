"""CreateImage as AWS does it: one snapshot per attached EBS volume, states that take time.

moto makes every image ``available`` at once with a single made-up 15 GiB
snapshot, which is exactly what a backup gate must not be tested against. The
image and snapshot classes here subclass moto's, so every moto code path
(DescribeImages filters, DeleteSnapshot's in-use check, DeregisterImage, the
serializers) sees them; only ``state`` / ``status`` / ``progress`` and the
block device mappings are computed, lazily, from the sandbox clock.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from moto.ec2.exceptions import EC2ClientError, InvalidTaggableResourceType
from moto.ec2.models.amis import Ami
from moto.ec2.models.elastic_block_store import Snapshot
from moto.ec2.utils import random_ami_id, random_snapshot_id

from sandbox.clock import Clock, Settings, to_datetime
from sandbox.ec2.platforms import instance_os
from sandbox.faults import FaultStore
from sandbox.realism import draw

_AMI_NAME = re.compile(r"^[a-zA-Z0-9()\[\] ./\-'@_]{3,128}$")
_IMAGE_SOURCE_STATES = {"running", "stopping", "stopped"}
DEFAULT_FAILURE = {"Code": "Server.InternalError", "Message": "Server.InternalError: Internal error on image creation"}


@dataclasses.dataclass(frozen=True)
class Transition:
    """Pending from ``start`` for ``seconds``, then ``outcome``; ``outcome`` None means pending forever."""

    start: float
    seconds: float
    outcome: str | None

    def settled(self, now: float) -> bool:
        return self.outcome is not None and now >= self.start + self.seconds

    def state(self, now: float, pending: str = "pending") -> str:
        return self.outcome if self.settled(now) and self.outcome else pending

    def progress(self, now: float) -> int:
        """Percent done; a stuck or failing resource never reports 100."""
        if self.settled(now) and self.outcome in ("completed", "available"):
            return 100
        if self.seconds <= 0:
            return 99
        return max(0, min(99, int(100 * (now - self.start) / self.seconds)))

    @property
    def end(self) -> float:
        return self.start + self.seconds


@dataclasses.dataclass(frozen=True)
class ImageRequest:
    instance_id: str
    name: str
    description: str
    no_reboot: bool
    tag_specifications: list[dict[str, Any]]


class BackupSnapshot(Snapshot):
    """A CreateImage snapshot of one source volume; ``status`` follows its Transition."""

    def __init__(self, ec2_backend: Any, snapshot_id: str, volume: Any, description: str, from_ami: str, clock: Clock, transition: Transition,
                 visible_from: float) -> None:
        self._clock = clock
        self._transition = transition
        self._status_override: str | None = None
        # Eventual consistency: DescribeSnapshots does not return it before this sandbox time.
        self.visible_from = visible_from
        super().__init__(ec2_backend, snapshot_id, volume, description, encrypted=volume.encrypted, from_ami=from_ami)
        # Snapshot.__init__ assigns status="completed" and a wall-clock start; both belong to the sandbox clock.
        self._status_override = None
        self.start_time = to_datetime(transition.start)

    @property
    def status(self) -> str:
        return self._status_override or self._transition.state(self._clock.now())

    @status.setter
    def status(self, value: str) -> None:
        self._status_override = value

    @property
    def progress(self) -> str:
        return f"{self._transition.progress(self._clock.now())}%"

    @property
    def state_message(self) -> str | None:
        if self.status == "error":
            return f"Snapshot creation failed for volume {self.volume.id}: the volume could not be read."
        return None

    @property
    def completion_time(self) -> Any:
        return to_datetime(self._transition.end) if self.status == "completed" else None


@dataclasses.dataclass(frozen=True)
class _Device:
    name: str
    snapshot: BackupSnapshot
    volume: Any
    delete_on_termination: bool


class BackupImage(Ami):
    """An image made by CreateImage; ``state`` follows its Transition (pending, then available or failed)."""

    def __init__(self, ec2_backend: Any, ami_id: str, instance: Any, request: ImageRequest, clock: Clock, transition: Transition,
                 failure: dict[str, str] | None, settings: Settings) -> None:
        self._clock = clock
        self._transition = transition
        self._failure = failure
        # Eventual consistency: DescribeImages does not return the image before ``visible_from``, and while it is
        # pending its mappings lack SnapshotId until ``snapshot_ids_from`` (sandbox times).
        self.visible_from = transition.start + settings.describe_visibility_seconds
        self.snapshot_ids_from = self.visible_from + settings.snapshot_id_delay_seconds
        self._state_override: str | None = None
        self._devices: list[_Device] = []
        super().__init__(ec2_backend, ami_id, instance=instance, name=request.name, description=request.description,
                         root_device_name=instance.root_device_name, root_device_type="ebs", creation_date=to_datetime(transition.start))
        # Without NoReboot, EC2 reboots a running instance to image it consistently.
        self.rebooted_source = instance.state == "running" and not request.no_reboot
        # Ami.__init__ assigns state="available" and fabricates one 15 GiB snapshot; neither describes this image.
        self._state_override = None
        ec2_backend.snapshots.pop(self.ebs_snapshot.id, None)
        # The image is billed like its source instance, whatever name it was given.
        self._os = instance_os(instance)

    @property
    def platform_details(self) -> str:
        return self._os.platform_details

    @property
    def usage_operation(self) -> str:
        return self._os.usage_operation

    def add_device(self, name: str, snapshot: BackupSnapshot, volume: Any, delete_on_termination: bool) -> None:
        self._devices.append(_Device(name, snapshot, volume, delete_on_termination))
        if name == self.root_device_name or len(self._devices) == 1:
            self.ebs_snapshot = snapshot

    @property
    def state(self) -> str:
        return self._state_override or self._transition.state(self._clock.now())

    @state.setter
    def state(self, value: str) -> None:
        # moto's DisableImage / EnableImage set the state explicitly; that wins over the timeline.
        self._state_override = value

    @property
    def state_reason(self) -> dict[str, str] | None:
        return self._failure if self.state == "failed" else None

    @property
    def snapshots(self) -> list[BackupSnapshot]:
        return [device.snapshot for device in self._devices]

    @property
    def block_device_mappings(self) -> list[dict[str, Any]]:
        return [
            {
                "DeviceName": device.name,
                "Ebs": {
                    "SnapshotId": device.snapshot.id,
                    "VolumeSize": device.volume.size,
                    "VolumeType": device.volume.volume_type,
                    "DeleteOnTermination": device.delete_on_termination,
                    "Encrypted": bool(device.volume.encrypted),
                },
            }
            for device in self._devices
        ]


def create_backup_image(ec2_backend: Any, request: ImageRequest, clock: Clock, settings: Settings, faults: FaultStore) -> BackupImage:
    """Validate like EC2, then register a pending image with one pending snapshot per attached volume."""
    image_tags, snapshot_tags = _split_tag_specifications(request.tag_specifications)
    if not request.name or not _AMI_NAME.match(request.name):
        raise EC2ClientError(
            "InvalidParameterValue",
            "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/' and '_'",
        )
    instance = ec2_backend.get_instance(request.instance_id)
    if instance.state not in _IMAGE_SOURCE_STATES:
        raise EC2ClientError(
            "InvalidParameterValue",
            f"Invalid value '{request.instance_id}' for instanceId. Instance is not in state 'running' or 'stopping' or 'stopped'",
        )
    for existing in list(ec2_backend.amis.values()):
        if existing.name == request.name and existing.owner_id == ec2_backend.account_id:
            raise EC2ClientError("InvalidAMIName.Duplicate", f"AMI name {request.name} is already in use by AMI {existing.id}")

    now = clock.now()
    stuck = faults.take("ami_stuck", instance.id)
    failed = faults.take("ami_fail", instance.id)
    broken = faults.take("snapshot_error", instance.id)
    failure = None
    if failed is not None:
        failure = {"Code": failed.options.get("code", DEFAULT_FAILURE["Code"]), "Message": failed.options.get("message", DEFAULT_FAILURE["Message"])}
    image_outcome = None if stuck else ("failed" if failure else "available")
    ami_id = random_ami_id()
    devices = instance.get_block_device_mapping
    # Durations drawn per resource from the settings' ranges (fixed when the max is 0, as in the fast profile).
    snapshot_ids = [random_snapshot_id() for _device in devices]
    snapshot_seconds = [draw(snapshot_id, settings.snapshot_pending_seconds, settings.snapshot_pending_max_seconds, "snapshot")
                        for snapshot_id in snapshot_ids]
    image_seconds = draw(ami_id, settings.ami_pending_seconds, settings.ami_pending_max_seconds, "ami")
    if settings.image_waits_for_snapshots and snapshot_seconds:
        # "The AMI is available when every snapshot has completed" (CreateImage).
        image_seconds = max([image_seconds, *snapshot_seconds])
    image = BackupImage(ec2_backend, ami_id, instance, request, clock, Transition(now, image_seconds, image_outcome), failure, settings)

    broken_device = _broken_device(devices, broken.options.get("device") if broken else None) if broken else None
    for (device_name, mapping), snapshot_id, seconds in zip(devices, snapshot_ids, snapshot_seconds):
        volume = ec2_backend.get_volume(mapping.volume_id)
        outcome = None if stuck else ("error" if device_name == broken_device else "completed")
        snapshot = BackupSnapshot(
            ec2_backend,
            snapshot_id,
            volume,
            f"Created by CreateImage({instance.id}) for {ami_id}",
            ami_id,
            clock,
            Transition(now, seconds, outcome),
            image.visible_from,
        )
        ec2_backend.snapshots[snapshot.id] = snapshot
        if snapshot_tags:
            ec2_backend.create_tags([snapshot.id], snapshot_tags)
        image.add_device(device_name, snapshot, volume, bool(mapping.delete_on_termination))

    if image_tags:
        ec2_backend.create_tags([ami_id], image_tags)
    ec2_backend.amis[ami_id] = image
    return image


def _split_tag_specifications(specifications: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """Tags for the image and for every snapshot; EC2 accepts no other resource type here."""
    tags: dict[str, dict[str, str]] = {"image": {}, "snapshot": {}}
    for specification in specifications:
        resource_type = specification.get("ResourceType")
        if resource_type not in tags:
            raise InvalidTaggableResourceType(str(resource_type))
        for tag in specification.get("Tags", []):
            if tag["Key"].startswith("aws:"):
                raise EC2ClientError("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
            tags[resource_type][tag["Key"]] = tag.get("Value", "")
    return tags["image"], tags["snapshot"]


def _broken_device(devices: list[tuple[str, Any]], wanted: str | None) -> str | None:
    """Which device's snapshot fails: the one asked for, else the last one (a data volume when there is one)."""
    names = [device[0] for device in devices]
    if wanted in names:
        return wanted
    return names[-1] if names else None


def backup_images() -> list[dict[str, Any]]:
    """Every image CreateImage has made, in every account and region, with its snapshots' current states."""
    from moto.ec2.models import ec2_backends  # pylint: disable=import-outside-toplevel

    found = []
    for account, regions in list(ec2_backends.items()):
        for region, backend in list(regions.items()):
            for image in list(backend.amis.values()):
                if isinstance(image, BackupImage):
                    found.append({
                        "image_id": image.id,
                        "name": image.name,
                        "account": account,
                        "region": region,
                        "instance_id": image.instance_id,
                        "state": image.state,
                        "created_at": image.creation_date.timestamp(),
                        "rebooted_instance": image.rebooted_source,
                        "snapshots": {snapshot.id: snapshot.status for snapshot in image.snapshots},
                    })
    return found
