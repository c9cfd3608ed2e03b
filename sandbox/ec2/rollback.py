"""What a rollback meets in EC2: root volume replacement tasks, volumes that take time, instances that stop and start.

moto has no CreateReplaceRootVolumeTask / DescribeReplaceRootVolumeTasks, and it
makes every volume ``available`` at once, every attachment ``attached`` at once
and every StopInstances / StartInstances instant: a rollback tested against that
would never wait for anything. Here (all lazy, on the sandbox clock, with the
settings in force when the action started):

- CreateReplaceRootVolumeTask (ImageId or SnapshotId, ClientToken idempotency,
  DeleteReplacedRootVolume, task tags): ``pending`` then ``in-progress`` (the
  instance reboots: instance status ``initializing``) for ``root_replace_seconds``,
  then ``succeeded`` (a new volume restored from the image's root snapshot is the
  root device; the old one is detached, kept unless DeleteReplacedRootVolume) or,
  with the ``rollback_fail`` fault at ``root_replace``, ``failing`` then ``failed``
  with the original root volume still attached. A successful replacement from a
  CreateImage snapshot also takes the instance's patch state back to that
  snapshot's moment (``CommandStore.restore``).
- CreateVolume: ``creating`` for ``volume_create_seconds``, then ``available``
  (``error`` with the fault at ``volume_create``); ClientToken idempotency.
- AttachVolume / DetachVolume: ``attaching`` / ``detaching`` for
  ``volume_attach_seconds``; EC2's refusals (volume not available, other zone,
  device in use, root volume of a running instance).
- StopInstances / StartInstances (calls from clients, not the seeder):
  ``stopping`` for ``instance_stop_seconds``, ``pending`` for
  ``instance_start_seconds``; with the fault at ``start`` the instance goes back to
  ``stopped`` (StateReason ``Server.InternalError``).

Pages: EC2 API reference CreateReplaceRootVolumeTask, DescribeReplaceRootVolumeTasks,
ReplaceRootVolumeTask (task states), CreateVolume, AttachVolume, DetachVolume,
StartInstances, StopInstances; EC2 user guide "Replace a root volume" (see sandbox/README.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from moto.core.responses import ActionResult, BaseResponse
from moto.ec2.models.elastic_block_store import Volume, VolumeAttachment
from moto.ec2.models.instances import Instance, StateReason
from moto.ec2.responses import EC2Response
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.responses.instances import InstanceResponse
from moto.ec2.utils import random_id

from sandbox import moto_hooks, runtime
from sandbox.clock import to_iso
from sandbox.errors import ec2_error
from sandbox.paging import page
from sandbox.ssm import managed

INTERNAL_HEADER = "X-Cms-Sandbox-Internal"
_ACTIVE_TASK_STATES = ("pending", "in-progress", "failing")
_PENDING_SHARE = 0.3  # of root_replace_seconds: the replacement volume is being created
_FAILING_SHARE = 0.7  # a failing task turns "failing" from here


def _state() -> Any | None:
    try:
        return runtime.current()
    except RuntimeError:
        return None


def _now() -> float:
    state = _state()
    return state.clock.now() if state is not None else 0.0


def take_fault(instance_id: str, step: str) -> Any | None:
    """The active ``rollback_fail`` fault of this instance for this step (used up by one when it has a count)."""
    state = _state()
    if state is None or not instance_id:
        return None
    for fault in state.fault_store.active():
        if fault.kind == "rollback_fail" and fault.instance_id == instance_id and fault.options.get("step", "root_replace") == step:
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault
    return None


def _internal(response: BaseResponse) -> bool:
    return bool(response.headers.get(INTERNAL_HEADER))


# -- instance states: stopping / pending take time ------------------------------------------------------


@dataclasses.dataclass
class _InstanceTransition:
    name: str
    code: int
    until: float
    final: tuple[str, int] | None = None  # None: moto's state stands; else the state it ends in
    reason: str | None = None


def _instance_state_get(self: Instance) -> Any:
    transition = self.__dict__.get("_cms_transition")
    real = self.__dict__["_cms_state"] if "_cms_state" in self.__dict__ else self.__dict__["_state"]
    if transition is not None:
        if _now() < transition.until:
            return type(real)(transition.name, transition.code)
        del self.__dict__["_cms_transition"]
        if transition.final is not None:
            real.name, real.code = transition.final
            if transition.reason:
                self._reason = f"{transition.reason}: the instance could not be started"
                self.state_reason = StateReason(f"{transition.reason}: the instance could not be started", transition.reason)
    return real


def _instance_state_set(self: Instance, value: Any) -> None:
    self.__dict__["_cms_state"] = value
    self.__dict__.pop("_cms_transition", None)


def _state_reason_get(self: Instance) -> Any:
    self._state  # pylint: disable=pointless-statement,protected-access  # a failed start sets the reason when it settles
    return self.__dict__.get("_cms_state_reason")


def _state_reason_set(self: Instance, value: Any) -> None:
    self.__dict__["_cms_state_reason"] = value


def _in_transition(instance: Instance) -> _InstanceTransition | None:
    instance._state  # pylint: disable=pointless-statement,protected-access  # settles a finished transition
    return instance.__dict__.get("_cms_transition")


@dataclasses.dataclass(frozen=True)
class _StateChange:
    """StopInstances or StartInstances, as EC2 answers them (EC2 API reference StopInstances, StartInstances)."""

    action: str  # moto's response and backend method
    result_key: str
    name: str  # the state the instance is in meanwhile ...
    code: int
    seconds: str  # ... for this many seconds (the setting's name)
    already: str  # the state in which there is nothing to do
    refusal: str  # IncorrectInstanceState message, formatted with the instance ID


_STOP = _StateChange(
    "stop_instances", "StoppingInstances", "stopping", 64, "instance_stop_seconds", "stopped",
    "This instance '%s' is not in a state from which it can be stopped.",
)
_START = _StateChange(
    "start_instances", "StartingInstances", "pending", 0, "instance_start_seconds", "running",
    "The instance '%s' is not in a state from which it can be started.",
)


def _change_states(self: InstanceResponse, change: _StateChange) -> ActionResult:
    """Stop or start each instance: an instance already on its way is answered as such, one already there is left as it is,
    one in any other transition is refused; the others are in ``change.name`` for the change's duration."""
    if _internal(self):
        return moto_hooks.original(InstanceResponse, change.action)(self)
    instance_ids = self._get_param("InstanceIds", [])
    self.error_on_dryrun()
    state = runtime.current()
    rows = []
    for instance_id in instance_ids:
        instance = self.ec2_backend.get_instance(instance_id)
        transition = _in_transition(instance)
        previous = {"Code": instance.state_code, "Name": instance.state}
        current = {"Code": change.code, "Name": change.name}
        if transition is not None and transition.name == change.name:
            rows.append({"InstanceId": instance_id, "CurrentState": current, "PreviousState": previous})
            continue
        if transition is not None or instance.state not in ("running", "stopped"):
            raise ec2_error("IncorrectInstanceState", change.refusal % instance_id)
        if instance.state == change.already:
            rows.append({"InstanceId": instance_id, "CurrentState": previous, "PreviousState": previous})
            continue
        final = reason = None
        if change is _START:
            if not _root_attached(instance):
                raise ec2_error("IncorrectInstanceState", f"The instance '{instance_id}' does not have an 'EBS' root volume attached.")
            if take_fault(instance_id, "start") is not None:  # the start fails: the instance goes back to stopped
                final, reason = ("stopped", 80), "Server.InternalError"
        getattr(self.ec2_backend, change.action)([instance_id])
        until = state.clock.now() + getattr(state.settings, change.seconds)
        instance.__dict__["_cms_transition"] = _InstanceTransition(change.name, change.code, until, final=final, reason=reason)
        rows.append({"InstanceId": instance_id, "CurrentState": current, "PreviousState": previous})
    return ActionResult({change.result_key: rows})


def stop_instances(self: InstanceResponse) -> ActionResult:
    return _change_states(self, _STOP)


def start_instances(self: InstanceResponse) -> ActionResult:
    return _change_states(self, _START)


def _root_attached(instance: Instance) -> bool:
    return instance.root_device_name in instance.block_device_mapping


# -- volumes: creating, attaching, detaching take time ---------------------------------------------------


def _volume_status(self: Volume) -> str:
    ready = self.__dict__.get("_cms_ready")
    if ready is not None:
        until, outcome = ready
        if _now() < until:
            return "creating"
        if outcome == "error":
            return "error"
    attachment = self.attachment
    if attachment is not None:
        if attachment.status == "detached":
            self.attachment = None
            return "available"
        return "in-use"
    return "available"


def _volume_snapshot_get(self: Volume) -> str:
    # AWS answers SnapshotId "" for a volume not made from a snapshot; moto leaves it out (amazon.aws.ec2_vol_info then fails).
    return self.__dict__.get("_cms_snapshot_id") or ""


def _volume_snapshot_set(self: Volume, value: str | None) -> None:
    self.__dict__["_cms_snapshot_id"] = value


def _attachment_status_get(self: VolumeAttachment) -> str:
    status = self.__dict__["_cms_status"]
    until = self.__dict__.get("_cms_until")
    if until is not None and _now() >= until:
        status = {"attaching": "attached", "detaching": "detached"}.get(status, status)
        self.__dict__["_cms_status"] = status
        self.__dict__.pop("_cms_until")
    return status


def _attachment_status_set(self: VolumeAttachment, value: str) -> None:
    self.__dict__["_cms_status"] = value
    self.__dict__.pop("_cms_until", None)


def _snapshot_instance(backend: Any, snapshot_id: str | None) -> str | None:
    """The instance a CreateImage snapshot was taken of (None for any other snapshot)."""
    if not snapshot_id or snapshot_id not in backend.snapshots:
        return None
    image = backend.amis.get(getattr(backend.snapshots[snapshot_id], "from_ami", None) or "")
    return getattr(image, "instance_id", None)


def create_volume(self: ElasticBlockStore) -> ActionResult:
    if _internal(self):
        return moto_hooks.original(ElasticBlockStore, "create_volume")(self)
    token = self._get_param("ClientToken")
    tokens = self.ec2_backend.__dict__.setdefault("_cms_volume_tokens", {})
    if token and tokens.get(token) in self.ec2_backend.volumes:
        # Ensuring idempotency: the same ClientToken answers the volume the first call made.
        return ActionResult(self.ec2_backend.volumes[tokens[token]])
    result = moto_hooks.original(ElasticBlockStore, "create_volume")(self)
    volume = result.result
    state = runtime.current()
    fault = take_fault(_snapshot_instance(self.ec2_backend, volume.snapshot_id) or "", "volume_create")
    volume.__dict__["_cms_ready"] = (state.clock.now() + state.settings.volume_create_seconds, "error" if fault is not None else "available")
    if token:
        tokens[token] = volume.id
    return result


def attach_volume(self: ElasticBlockStore) -> ActionResult:
    if _internal(self):
        return moto_hooks.original(ElasticBlockStore, "attach_volume")(self)
    volume_id = self._get_param("VolumeId")
    instance_id = self._get_param("InstanceId")
    device = self._get_param("Device")
    self.error_on_dryrun()
    volume = self.ec2_backend.get_volume(volume_id)
    instance = self.ec2_backend.get_instance(instance_id)
    status = volume.status
    if status == "in-use":
        raise ec2_error("VolumeInUse", f"{volume_id} is already attached to an instance")
    if status != "available":
        raise ec2_error("IncorrectState", f"{volume_id} is not 'available'.")
    if volume.zone.name != instance.placement.zone:
        raise ec2_error("InvalidVolume.ZoneMismatch", f"The volume '{volume_id}' is not in the same availability zone as instance '{instance_id}'")
    if device in instance.block_device_mapping or _detaching_at(self.ec2_backend, instance_id, device):
        raise ec2_error("InvalidParameterValue", f"Invalid value '{device}' for unixDevice. Attachment point {device} is already in use")
    if take_fault(instance_id, "attach") is not None:
        raise ec2_error("IncorrectState", f"{volume_id} could not be attached to {instance_id}: the attachment failed, try again")
    result = moto_hooks.original(ElasticBlockStore, "attach_volume")(self)
    state = runtime.current()
    volume.attachment.status = "attaching"
    volume.attachment.__dict__["_cms_until"] = state.clock.now() + state.settings.volume_attach_seconds
    return result


def _detaching_at(backend: Any, instance_id: str, device: str) -> bool:
    for volume in list(backend.volumes.values()):
        attachment = volume.attachment
        if attachment is not None and attachment.instance.id == instance_id and attachment.device == device and attachment.status == "detaching":
            return True
    return False


def detach_volume(self: ElasticBlockStore) -> ActionResult:
    if _internal(self):
        return moto_hooks.original(ElasticBlockStore, "detach_volume")(self)
    volume_id = self._get_param("VolumeId")
    self.error_on_dryrun()
    volume = self.ec2_backend.get_volume(volume_id)
    attachment = volume.attachment
    if attachment is None or attachment.status in ("detaching", "detached"):
        raise ec2_error("IncorrectState", f"Volume '{volume_id}' is in the 'available' state.")
    instance = attachment.instance
    if attachment.device == instance.root_device_name and instance.state != "stopped":
        raise ec2_error("IncorrectState", f"Unable to detach root volume '{volume_id}' from instance '{instance.id}'")
    device = attachment.device
    if self._get_param("InstanceId") not in (None, instance.id) or self._get_param("Device") not in (None, device):
        raise ec2_error("InvalidAttachment.NotFound", f"The volume '{volume_id}' is not attached to that instance and device")
    attach_time = attachment.attach_time
    self.ec2_backend.detach_volume(volume_id, instance.id, device)
    # The volume stays attached, "detaching", for a while (moto forgets it at once); the device stays taken meanwhile.
    state = runtime.current()
    ghost = VolumeAttachment(volume, instance, device, "detaching")
    ghost.__dict__["_cms_until"] = state.clock.now() + state.settings.volume_attach_seconds
    volume.attachment = ghost
    return ActionResult({"VolumeId": volume_id, "InstanceId": instance.id, "Device": device, "State": "detaching", "AttachTime": attach_time})


# -- root volume replacement tasks -----------------------------------------------------------------------


@dataclasses.dataclass
class RootTask:
    task_id: str
    instance_id: str
    image_id: str | None
    snapshot_id: str
    delete_replaced: bool
    tags: dict[str, str]
    start: float
    seconds: float
    fails: bool
    client_token: str | None
    settled: bool = False
    new_volume_id: str | None = None

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def state_at(self, now: float) -> str:
        if now >= self.end:
            return "failed" if self.fails else "succeeded"
        if now < self.start + _PENDING_SHARE * self.seconds:
            return "pending"
        if self.fails and now >= self.start + _FAILING_SHARE * self.seconds:
            return "failing"
        return "in-progress"

    def view(self, now: float) -> dict[str, Any]:
        item: dict[str, Any] = {
            "ReplaceRootVolumeTaskId": self.task_id,
            "InstanceId": self.instance_id,
            "TaskState": self.state_at(now),
            "StartTime": to_iso(self.start),
            "Tags": [{"Key": k, "Value": v} for k, v in sorted(self.tags.items())],
            "SnapshotId": self.snapshot_id,
            "DeleteReplacedRootVolume": self.delete_replaced,
        }
        if self.image_id:
            item["ImageId"] = self.image_id
        if now >= self.end:
            item["CompleteTime"] = to_iso(self.end)
        return item


def _tasks(backend: Any) -> dict[str, RootTask]:
    return backend.__dict__.setdefault("_cms_root_tasks", {})


def _root_snapshot(backend: Any, image: Any) -> tuple[str, dict[str, Any]]:
    for mapping in image.block_device_mappings or []:
        if mapping.get("DeviceName") == image.root_device_name and mapping.get("Ebs", {}).get("SnapshotId"):
            return mapping["Ebs"]["SnapshotId"], mapping["Ebs"]
    snapshot = getattr(image, "ebs_snapshot", None)
    if snapshot is None:
        raise ec2_error("InvalidParameterValue", f"The AMI '{image.id}' has no EBS root snapshot")
    return snapshot.id, {"VolumeSize": snapshot.volume.size}


def create_replace_root_volume_task(self: EC2Response) -> ActionResult:
    instance_id = self._get_param("InstanceId")
    image_id = self._get_param("ImageId")
    snapshot_id = self._get_param("SnapshotId")
    token = self._get_param("ClientToken")
    delete_replaced = bool(self._get_bool_param("DeleteReplacedRootVolume", False))
    self.error_on_dryrun()
    backend = self.ec2_backend
    state = runtime.current()
    with state.lock:
        tasks = _tasks(backend)
        if token:
            for task in tasks.values():
                if task.client_token == token:
                    return ActionResult({"ReplaceRootVolumeTask": task.view(state.clock.now())})
        if image_id and snapshot_id:
            raise ec2_error("InvalidParameterCombination", "Specify either ImageId or SnapshotId, not both")
        instance = backend.get_instance(instance_id)
        if instance.state != "running":
            raise ec2_error("IncorrectInstanceState", f"The instance '{instance_id}' is not in the 'running' state.")
        now = state.clock.now()
        if any(t.instance_id == instance_id and t.state_at(now) in _ACTIVE_TASK_STATES for t in tasks.values()):
            raise ec2_error("IncorrectState", f"The instance '{instance_id}' already has a root volume replacement task in progress.")
        if image_id:
            image = backend.amis.get(image_id)
            if image is None:
                raise ec2_error("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
            if image.state != "available":
                raise ec2_error("InvalidAMIID.Unavailable", f"The image '{image_id}' is not available")
            snapshot_id, _ebs = _root_snapshot(backend, image)
        elif snapshot_id:
            backend.get_snapshot(snapshot_id)
        else:
            raise ec2_error("MissingParameter", "Restoring to the launch state is not supported by the sandbox: give ImageId or SnapshotId")
        tags: dict[str, str] = {}
        for spec in self._get_param("TagSpecifications", []) or []:
            if spec.get("ResourceType") != "replace-root-volume-task":
                raise ec2_error("InvalidParameterValue", f"'{spec.get('ResourceType')}' is not a valid taggable resource type for this operation.")
            tags.update({tag["Key"]: tag.get("Value", "") for tag in spec.get("Tags", [])})
        fails = take_fault(instance_id, "root_replace") is not None
        task = RootTask(
            task_id=random_id(prefix="replacevol", size=17), instance_id=instance_id, image_id=image_id, snapshot_id=snapshot_id,
            delete_replaced=delete_replaced, tags=tags, start=now, seconds=state.settings.root_replace_seconds, fails=fails, client_token=token,
        )
        tasks[task.task_id] = task
        _OPEN.append((backend, task))
        if not fails:
            snapshot = backend.snapshots.get(snapshot_id)
            as_of = snapshot.start_time.timestamp() if snapshot is not None and hasattr(snapshot, "start_time") else None
            if as_of is not None and _snapshot_instance(backend, snapshot_id) == instance_id:
                # The machine goes back to the moment of the snapshot: so does what a patch scan finds on it.
                state.commands.restore(instance_id, task.end, as_of)
        return ActionResult({"ReplaceRootVolumeTask": task.view(now)})


def describe_replace_root_volume_tasks(self: EC2Response) -> ActionResult:
    ids = self._get_param("ReplaceRootVolumeTaskIds", []) or []
    filters = self._filters_from_querystring()
    self.error_on_dryrun()
    unknown = {name for name in filters if name != "instance-id"}
    if unknown:
        raise ec2_error("InvalidParameterValue", f"The filter '{sorted(unknown)[0]}' is invalid")
    now = _now()
    tasks = sorted(_tasks(self.ec2_backend).values(), key=lambda task: task.start)
    if ids:
        missing = [i for i in ids if i not in {t.task_id for t in tasks}]
        if missing:
            raise ec2_error("InvalidReplaceRootVolumeTaskId.NotFound", f"The replace root volume task ID '{missing[0]}' does not exist")
        tasks = [t for t in tasks if t.task_id in ids]
    if "instance-id" in filters:
        tasks = [t for t in tasks if t.instance_id in filters["instance-id"]]
    max_results = self._get_int_param("MaxResults")
    token = self._get_param("NextToken")
    selected, next_token = page([t.view(now) for t in tasks], max_results, token,
                                lambda: ec2_error("InvalidParameterValue", f"Invalid value '{token}' for nextToken"))
    return ActionResult({"ReplaceRootVolumeTasks": selected, "NextToken": next_token})


# Replacements whose end has not been applied to moto's volumes yet: (backend, task).
_OPEN: list[tuple[Any, RootTask]] = []


def settle() -> None:
    """Apply every finished replacement to moto's instances and volumes (called before each request is answered)."""
    if not _OPEN:
        return
    state = _state()
    if state is None:
        return
    from moto.ec2.models import ec2_backends  # pylint: disable=import-outside-toplevel

    now = state.clock.now()
    with state.lock:
        for entry in list(_OPEN):
            backend, task = entry
            regions = ec2_backends[backend.account_id] if backend.account_id in ec2_backends else {}
            current = dict.get(regions, backend.region_name)
            if current is not backend:  # a reset since: the task went with its backend
                _OPEN.remove(entry)
            elif now >= task.end:
                _OPEN.remove(entry)
                _apply(backend, task)


def _apply(backend: Any, task: RootTask) -> None:
    task.settled = True
    if task.fails:
        return
    instance = backend.get_instance(task.instance_id)
    device = instance.root_device_name
    old = instance.block_device_mapping.get(device)
    snapshot = backend.snapshots.get(task.snapshot_id)
    old_volume = backend.volumes.get(old.volume_id) if old is not None else None
    size = max(snapshot.volume.size if snapshot is not None else 8, old_volume.size if old_volume is not None else 0)
    encrypted = bool(getattr(snapshot, "encrypted", False) or (old_volume is not None and old_volume.encrypted))
    new = backend.create_volume(size=size, zone_name=instance.placement.zone, snapshot_id=task.snapshot_id if snapshot is not None else None,
                                encrypted=encrypted, kms_key_id=old_volume.kms_key_id if old_volume is not None and old_volume.encrypted else None,
                                volume_type=old_volume.volume_type if old_volume is not None else "gp3",
                                iops=old_volume.iops if old_volume is not None else None,
                                throughput=old_volume.throughput if old_volume is not None else None)
    delete_on_termination = bool(old.delete_on_termination) if old is not None else True
    if old_volume is not None:
        backend.detach_volume(old_volume.id, instance.id, device)
        if task.delete_replaced:
            backend.delete_volume(old_volume.id)
    backend.attach_volume(new.id, instance.id, device, delete_on_termination=delete_on_termination)
    task.new_volume_id = new.id


def call_action(self: BaseResponse) -> Any:
    settle()
    return moto_hooks.original(BaseResponse, "call_action")(self)


def rebooting(backend: Any, instance_id: str, now: float) -> bool:
    """True while a replacement task works on the instance (EC2 reboots it: status checks are initializing)."""
    return any(t.instance_id == instance_id and t.state_at(now) in _ACTIVE_TASK_STATES for t in _tasks(backend).values())


def describe_instance_status(self: InstanceResponse) -> ActionResult:
    from sandbox.ec2 import api as ec2_api  # pylint: disable=import-outside-toplevel

    result = ec2_api.describe_instance_status(self)
    now = _now()
    for item in result.result["InstanceStatuses"]:
        if rebooting(self.ec2_backend, item["InstanceId"], now):
            item["InstanceStatus"] = {"Status": "initializing", "Details": [{"Name": "reachability", "Status": "initializing"}]}
    return result


def ping_status(entry: Any, instance: Any, agent_offline: bool) -> str:
    """The SSM agent is offline while its instance reboots for a root volume replacement."""
    status = moto_hooks.original(managed, "ping_status")(entry, instance, agent_offline)
    if status == "Online" and instance is not None and rebooting(instance.ec2_backend, instance.id, _now()):
        return "ConnectionLost"
    return status


def install() -> None:
    moto_hooks.replace(EC2Response, "create_replace_root_volume_task", create_replace_root_volume_task)
    moto_hooks.replace(EC2Response, "describe_replace_root_volume_tasks", describe_replace_root_volume_tasks)
    moto_hooks.replace(ElasticBlockStore, "create_volume", create_volume)
    moto_hooks.replace(ElasticBlockStore, "attach_volume", attach_volume)
    moto_hooks.replace(ElasticBlockStore, "detach_volume", detach_volume)
    moto_hooks.replace(InstanceResponse, "stop_instances", stop_instances)
    moto_hooks.replace(InstanceResponse, "start_instances", start_instances)
    moto_hooks.replace(InstanceResponse, "describe_instance_status", describe_instance_status)
    moto_hooks.replace(BaseResponse, "call_action", call_action)
    moto_hooks.replace(managed, "ping_status", ping_status)
    moto_hooks.replace(Instance, "_state", property(_instance_state_get, _instance_state_set))
    moto_hooks.replace(Instance, "state_reason", property(_state_reason_get, _state_reason_set))
    moto_hooks.replace(Volume, "status", property(_volume_status))
    moto_hooks.replace(Volume, "snapshot_id", property(_volume_snapshot_get, _volume_snapshot_set))
    moto_hooks.replace(VolumeAttachment, "status", property(_attachment_status_get, _attachment_status_set))
