"""EC2 operations the sandbox answers differently from moto, installed onto moto's EC2 response mixins.

- CreateImage: lazy states, one snapshot per volume, snapshot tags, faults (see backup_images).
- DeregisterImage: honours DeleteAssociatedSnapshots; without it the snapshots stay in use for a while
  (DeleteSnapshot: InvalidSnapshot.InUse for ``snapshot_in_use_seconds``).
- DescribeImages / DescribeSnapshots: MaxResults + NextToken paging; DescribeSnapshots honours OwnerIds;
  eventual consistency (a new image and its snapshots are missing for ``describe_visibility_seconds``,
  then the pending image's mappings lack SnapshotId for ``snapshot_id_delay_seconds``).
- DescribeInstances: pages by instances (not reservations), never splits a reservation,
  returns everything without MaxResults, rejects bad tokens with a 400; ``platform`` and
  ``platform-details`` filters; ``Platform`` only ``windows``; ``PlatformDetails`` / ``UsageOperation``.
- DescribeInstanceStatus: ``status_impaired`` faults.
- Tags of a resource are read from moto's tag table directly (moto scans every tag per resource).
- DescribeLaunchTemplateVersions for all templates ($Latest/$Default without a template):
  each version once, ``image-id`` filter, paging.
"""

from __future__ import annotations

from typing import Any

from moto.ec2.exceptions import InvalidAMIIdError, InvalidParameterCombination, InvalidSnapshotIdError, InvalidSnapshotInUse
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.instances import Instance
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.responses.instances import InstanceResponse
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.ec2 import utils as ec2_utils
from moto.core.responses import ActionResult

from sandbox import moto_hooks, runtime
from sandbox.clock import to_datetime
from sandbox.ec2.backup_images import BackupImage, ImageRequest, create_backup_image
from sandbox.ec2.platforms import instance_os, normalise_ami_platform, os_info
from sandbox.errors import ec2_error
from sandbox.paging import decode_token, encode_token, page


def _invalid_token(token: str | None) -> Any:
    return lambda: ec2_error("InvalidParameterValue", f"Invalid value '{token}' for nextToken")


def _max_results(response: Any, low: int, high: int, combined_with: str | None = None, list_name: str = "") -> int | None:
    value = response._get_param("MaxResults")  # pylint: disable=protected-access
    if value is None:
        return None
    if combined_with and response._get_param(combined_with):  # pylint: disable=protected-access
        raise InvalidParameterCombination(f"The parameter {list_name} cannot be used with the parameter maxResults")
    value = int(value)
    if value < low:
        raise ec2_error("InvalidParameterValue", f"Value ( {value} ) for parameter maxResults is invalid. Expecting a value greater than {low}.")
    return min(value, high)


def create_image(self: AmisResponse) -> ActionResult:
    request = ImageRequest(
        instance_id=self._get_param("InstanceId"),
        name=self._get_param("Name"),
        description=self._get_param("Description", ""),
        no_reboot=bool(self._get_bool_param("NoReboot", False)),
        tag_specifications=self._get_param("TagSpecifications", []),
    )
    self.error_on_dryrun()
    state = runtime.current()
    with state.lock:
        image = create_backup_image(self.ec2_backend, request, state.clock, state.settings, state.fault_store)
    return ActionResult({"ImageId": image.id})


def _snapshot_ids(image: Any) -> list[str]:
    return [mapping["Ebs"]["SnapshotId"] for mapping in image.block_device_mappings if mapping.get("Ebs", {}).get("SnapshotId")]


def deregister_image(self: AmisResponse) -> ActionResult:
    """moto ignores DeleteAssociatedSnapshots; AWS deletes the image's snapshots unless another image uses them.

    Without it, the snapshots stay "in use" for ``snapshot_in_use_seconds`` after the image is gone
    (DeleteSnapshot answers InvalidSnapshot.InUse meanwhile), as AWS's often do for a while.
    """
    image = self.ec2_backend.amis.get(self._get_param("ImageId"))
    snapshot_ids = _snapshot_ids(image) if image is not None else []
    result = moto_hooks.original(AmisResponse, "deregister_image")(self)
    if not self._get_bool_param("DeleteAssociatedSnapshots", False):
        state = runtime.current()
        if state.settings.snapshot_in_use_seconds > 0:
            released = state.clock.now()
            for snapshot_id in snapshot_ids:
                snapshot = self.ec2_backend.snapshots.get(snapshot_id)
                if snapshot is not None:
                    snapshot.sandbox_in_use = (image.id, released + state.settings.snapshot_in_use_seconds)
        return result
    still_used = {snapshot_id for other in list(self.ec2_backend.amis.values()) for snapshot_id in _snapshot_ids(other)}
    outcomes = []
    for snapshot_id in snapshot_ids:
        if snapshot_id in still_used or snapshot_id not in self.ec2_backend.snapshots:
            outcomes.append({"SnapshotId": snapshot_id, "ReturnCode": "skipped"})
        else:
            self.ec2_backend.delete_snapshot(snapshot_id)
            outcomes.append({"SnapshotId": snapshot_id, "ReturnCode": "success"})
    return ActionResult({"Return": True, "DeleteSnapshotResults": outcomes})


def delete_snapshot(self: ElasticBlockStore) -> ActionResult:
    """A snapshot of an image deregistered less than ``snapshot_in_use_seconds`` ago is still in use."""
    snapshot = self.ec2_backend.snapshots.get(self._get_param("SnapshotId"))
    in_use = getattr(snapshot, "sandbox_in_use", None)
    if in_use is not None and runtime.current().clock.now() < in_use[1]:
        self.error_on_dryrun()
        raise InvalidSnapshotInUse(snapshot.id, in_use[0])
    return moto_hooks.original(ElasticBlockStore, "delete_snapshot")(self)


class _WithoutSnapshotIds:
    """A pending image as DescribeImages shows it before its snapshot ids are known: mappings without SnapshotId."""

    def __init__(self, image: BackupImage) -> None:
        self._image = image

    def __getattr__(self, name: str) -> Any:
        return getattr(self._image, name)

    @property
    def block_device_mappings(self) -> list[dict[str, Any]]:
        return [{**mapping, "Ebs": {key: value for key, value in mapping["Ebs"].items() if key != "SnapshotId"}}
                for mapping in self._image.block_device_mappings]


def _as_described(images: list[Any], now: float) -> list[Any]:
    """Eventual consistency ("Eventual consistency in the Amazon EC2 API"): a new image is missing, then pending without snapshot ids."""
    shown = []
    for image in images:
        if isinstance(image, BackupImage):
            if now < image.visible_from:
                continue
            if now < image.snapshot_ids_from and image.state == "pending":
                image = _WithoutSnapshotIds(image)
        shown.append(image)
    return shown


def describe_images(self: AmisResponse) -> ActionResult:
    max_results = _max_results(self, 1, 1000, "ImageIds", "imageIdsSet")
    found = moto_hooks.original(AmisResponse, "describe_images")(self).result["Images"]
    images = _as_described(found, runtime.current().clock.now())
    requested = self._get_param("ImageIds", [])
    if requested and found and not images:
        raise InvalidAMIIdError(requested)
    token = self._get_param("NextToken")
    selected, next_token = page(images, max_results, token, _invalid_token(token))
    return ActionResult({"Images": selected, "NextToken": next_token})


def describe_snapshots(self: ElasticBlockStore) -> ActionResult:
    max_results = _max_results(self, 5, 1000, "SnapshotIds", "snapshotIdSet")
    snapshots = moto_hooks.original(ElasticBlockStore, "describe_snapshots")(self).result["Snapshots"]
    now = runtime.current().clock.now()
    visible = [s for s in snapshots if now >= getattr(s, "visible_from", now)]
    if len(visible) < len(snapshots) and self._get_param("SnapshotIds", []):
        raise InvalidSnapshotIdError()
    snapshots = visible
    owners = self._get_param("OwnerIds", [])
    if owners:
        account = self.ec2_backend.account_id
        wanted = {account if owner == "self" else owner for owner in owners}
        snapshots = [s for s in snapshots if s.owner_id in wanted or ("amazon" in wanted and s.owner_id != account)]
    token = self._get_param("NextToken")
    selected, next_token = page(snapshots, max_results, token, _invalid_token(token))
    return ActionResult({"Snapshots": selected, "NextToken": next_token})


def describe_instances(self: InstanceResponse) -> ActionResult:
    self.error_on_dryrun()
    max_results = _max_results(self, 5, 1000, "InstanceIds", "instancesSet")
    instance_ids = self._get_param("InstanceIds", [])
    filters = self._filters_from_querystring()
    if instance_ids:
        reservations = self.ec2_backend.get_reservations_by_instance_ids(instance_ids, filters=filters)
    else:
        reservations = self.ec2_backend.describe_instances(filters=filters)
    token = self._get_param("NextToken")
    first = decode_token(token, _invalid_token(token))
    if first > len(reservations):
        raise _invalid_token(token)()
    if max_results is None:
        return ActionResult({"Reservations": reservations[first:], "NextToken": None})
    chosen = []
    instances = 0
    index = first
    # AWS counts instances against MaxResults but never splits a reservation over two pages.
    while index < len(reservations):
        size = len(reservations[index].instances)
        if chosen and instances + size > max_results:
            break
        chosen.append(reservations[index])
        instances += size
        index += 1
    return ActionResult({"Reservations": chosen, "NextToken": encode_token(index) if index < len(reservations) else None})


def describe_instance_status(self: InstanceResponse) -> ActionResult:
    instances = moto_hooks.original(InstanceResponse, "describe_instance_status")(self).result["InstanceStatuses"]
    faults = runtime.current().fault_store
    statuses = []
    for instance in instances:
        item: dict[str, Any] = {
            "AvailabilityZone": instance.placement.zone,
            "InstanceId": instance.id,
            "InstanceState": {"Code": instance.state_code, "Name": instance.state},
            "InstanceStatus": instance.instance_status,
            "SystemStatus": instance.system_status,
        }
        fault = faults.find("status_impaired", instance.id) if instance.state == "running" else None
        if fault is not None:
            impaired = {"Status": "impaired", "Details": [{"Name": "reachability", "Status": "failed", "ImpairedSince": to_datetime(fault.added_at)}]}
            check = fault.options.get("check", "instance")
            if check in ("instance", "both"):
                item["InstanceStatus"] = impaired
            if check in ("system", "both"):
                item["SystemStatus"] = impaired
        statuses.append(item)
    return ActionResult({"InstanceStatuses": statuses})


def describe_launch_template_versions(self: LaunchTemplates) -> ActionResult:
    if self._get_param("LaunchTemplateId") or self._get_param("LaunchTemplateName"):
        return moto_hooks.original(LaunchTemplates, "describe_launch_template_versions")(self)
    versions = self._get_param("Versions", [])
    if not versions or any(version not in ("$Latest", "$Default") for version in versions):
        # moto's own validation answers this case with AWS's message.
        return moto_hooks.original(LaunchTemplates, "describe_launch_template_versions")(self)
    self.error_on_dryrun()
    image_ids = self._filters_from_querystring().get("image-id")
    rows = []
    for template in self.ec2_backend.launch_templates.values():
        seen = set()
        for alias in versions:
            version = template.get_version(alias)
            if version.number in seen or (image_ids and version.image_id not in image_ids):
                continue
            seen.add(version.number)
            rows.append({
                "CreateTime": version.create_time,
                "CreatedBy": f"arn:{self.partition}:iam::{self.current_account}:root",
                "DefaultVersion": template.is_default(version),
                "LaunchTemplateData": version.data,
                "LaunchTemplateId": template.id,
                "LaunchTemplateName": template.name,
                "VersionDescription": version.description,
                "VersionNumber": version.number,
            })
    max_results = self._get_int_param("MaxResults")
    token = self._get_param("NextToken")
    selected, next_token = page(rows, min(max_results, 200) if max_results else None, token, _invalid_token(token))
    return ActionResult({"LaunchTemplateVersions": selected, "NextToken": next_token})


def _tags_of(resource: TaggedEC2Resource) -> list[dict[str, str]]:
    """moto's get_tags runs describe_tags, which scans every tag in the region through regexes (quadratic for
    DescribeInstances); its tag table is keyed by resource id, so read that entry directly. Same result."""
    if not resource.id:  # type: ignore[attr-defined]
        return []
    resource_id = resource.id  # type: ignore[attr-defined]
    resource_type = ec2_utils.EC2_PREFIX_TO_RESOURCE.get(ec2_utils.get_prefix(resource_id), "")
    tags = resource.ec2_backend.tags.get(resource_id, {})  # type: ignore[attr-defined]
    return [{"resource_id": resource_id, "key": key, "value": value, "resource_type": resource_type} for key, value in tags.items()]


def _load_amis_with_aws_platforms(backend: AmiBackend) -> None:
    moto_hooks.original(AmiBackend, "_load_amis")(backend)
    for image in backend.amis.values():
        normalise_ami_platform(image)


def install() -> None:
    moto_hooks.replace(AmisResponse, "create_image", create_image)
    moto_hooks.replace(AmisResponse, "deregister_image", deregister_image)
    moto_hooks.replace(AmisResponse, "describe_images", describe_images)
    moto_hooks.replace(ElasticBlockStore, "describe_snapshots", describe_snapshots)
    moto_hooks.replace(ElasticBlockStore, "delete_snapshot", delete_snapshot)
    moto_hooks.replace(InstanceResponse, "describe_instances", describe_instances)
    moto_hooks.replace(InstanceResponse, "describe_instance_status", describe_instance_status)
    moto_hooks.replace(LaunchTemplates, "describe_launch_template_versions", describe_launch_template_versions)
    moto_hooks.replace(AmiBackend, "_load_amis", _load_amis_with_aws_platforms)
    moto_hooks.replace(TaggedEC2Resource, "get_tags", _tags_of)
    moto_hooks.replace(Instance, "platform_details", property(lambda instance: instance_os(instance).platform_details))
    moto_hooks.replace(Instance, "usage_operation", property(lambda instance: instance_os(instance).usage_operation))
    moto_hooks.replace(Ami, "platform_details", property(lambda image: os_info(image.platform, image.name).platform_details))
    moto_hooks.replace(Ami, "usage_operation", property(lambda image: os_info(image.platform, image.name).usage_operation))
    # moto's instance filters are a name -> attribute table; these two raised NotImplementedError.
    ec2_utils.filter_dict_attribute_mapping["platform"] = "platform"
    ec2_utils.filter_dict_attribute_mapping["platform-details"] = "platform_details"
