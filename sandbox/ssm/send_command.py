"""SendCommand: validate the request the way SSM does, then decide every target's outcome.

The order of checks follows AWS: model constraints (ValidationException), the
document (InvalidDocument / InvalidDocumentVersion), its parameters
(InvalidParameters), then the targets (DuplicateInstanceId, InvalidInstanceId,
UnsupportedPlatformType). Any failing check rejects the whole call. Targets
are exactly the InstanceIds given (moto fans out to every instance in the
region), or the managed instances matching ``Targets``.
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import TYPE_CHECKING, Any

from moto.ssm.models import ssm_backends
from moto.utilities.utils import load_resource

from sandbox.ec2.lookup import instance_tags, region_instances
from sandbox.errors import ConstraintViolations, ssm_error
from sandbox.ssm import patching
from sandbox.ssm.commands import CommandRecord, PlannedInvocation
from sandbox.ssm.documents import RUN_PATCH_BASELINE, ResolvedDocument, resolve_document, validate_parameters
from sandbox.ssm.managed import ManagedInstance
from sandbox.ssm.schedule import Outcome, Target

if TYPE_CHECKING:
    from sandbox.state import SandboxState

INSTANCE_ID = re.compile(r"(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)")
_MAX_CONCURRENCY = re.compile(r"^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$")
_MAX_ERRORS = re.compile(r"^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$")
_DOCUMENT_NAME = re.compile(r"^[a-zA-Z0-9_\-.:/]{3,128}$")
_GONE_STATES = {"terminated", "shutting-down"}
DEFAULT_TIMEOUT_SECONDS = 3600
INVALID_INSTANCES_MESSAGE = "Instances not in a valid state for account"
_PATCH_GROUP_TAGS = ("Patch Group", "PatchGroup")
# SSM PlatformName -> key of moto's table of AWS's default patch baselines.
_BASELINE_OS = {
    "Amazon Linux": "AMAZON_LINUX_2",
    "Amazon Linux AMI": "AMAZON_LINUX",
    "Red Hat Enterprise Linux Server": "REDHAT_ENTERPRISE_LINUX",
    "SLES": "SUSE",
    "Ubuntu": "UBUNTU",
}


def check_constraints(params: dict[str, Any]) -> None:
    violations = ConstraintViolations()
    violations.pattern("documentName", params.get("DocumentName"), _DOCUMENT_NAME)
    violations.max_length("comment", params.get("Comment"), 100)
    instance_ids = params.get("InstanceIds")
    violations.max_length("instanceIds", instance_ids, 50)
    for instance_id in instance_ids or []:
        if not INSTANCE_ID.fullmatch(instance_id):
            constraint = f"Member must satisfy constraint: [Member must satisfy regular expression pattern: {INSTANCE_ID.pattern}]"
            violations.add("instanceIds", instance_ids, constraint)
            break
    violations.max_length("targets", params.get("Targets"), 5)
    for field, regex in (("maxConcurrency", _MAX_CONCURRENCY), ("maxErrors", _MAX_ERRORS)):
        value = params.get(field[0].upper() + field[1:])
        violations.max_length(field, value, 7)
        violations.pattern(field, value, regex)
    violations.value_range("timeoutSeconds", params.get("TimeoutSeconds"), 30, 2592000)
    violations.max_length("outputS3KeyPrefix", params.get("OutputS3KeyPrefix"), 500)
    violations.raise_if_any()
    if bool(instance_ids) == bool(params.get("Targets")):
        raise ssm_error("ValidationException", "Exactly one of InstanceIds and Targets must be specified.")


def plan_command(state: SandboxState, account: str, region: str, params: dict[str, Any]) -> CommandRecord:
    """A new command for this request, or the AWS error the request deserves."""
    check_constraints(params)
    document = resolve_document(ssm_backends[account][region], params["DocumentName"], params.get("DocumentVersion"))
    parameters = validate_parameters(document, params.get("Parameters") or {})
    instances = region_instances(account, region)
    targets = _resolve_targets(state, account, region, params, instances)
    if targets and not any(document.supports(entry.platform_type) for entry in targets):
        raise ssm_error("UnsupportedPlatformType", "The document doesn't support the platform type of the given managed node ID(s).")

    now = state.clock.now()
    settings = state.settings
    planned = [_plan_target(state, document, parameters, entry, instances[entry.instance_id], region) for entry in targets]
    request = {
        "Comment": params.get("Comment", ""),
        "Parameters": params.get("Parameters") or {},
        "InstanceIds": params.get("InstanceIds") or [],
        "Targets": params.get("Targets") or [],
        "OutputS3Region": params.get("OutputS3Region", ""),
        "OutputS3BucketName": params.get("OutputS3BucketName", ""),
        "OutputS3KeyPrefix": params.get("OutputS3KeyPrefix", ""),
        "ServiceRole": params.get("ServiceRoleArn", ""),
        "NotificationConfig": params.get("NotificationConfig") or {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""},
        "CloudWatchOutputConfig": params.get("CloudWatchOutputConfig") or {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
    }
    return CommandRecord(
        command_id=str(uuid.uuid4()),
        account=account,
        region=region,
        document=document,
        request=request,
        requested_at=now,
        timeout_seconds=int(params.get("TimeoutSeconds") or DEFAULT_TIMEOUT_SECONDS),
        max_concurrency=params.get("MaxConcurrency") or "50",
        max_errors=params.get("MaxErrors") or "0",
        settings=settings,
        invocations=planned,
        execution_timeout=document.execution_timeout(parameters),
    )


def _resolve_targets(state: SandboxState, account: str, region: str, params: dict[str, Any], instances: dict[str, Any]) -> list[ManagedInstance]:
    instance_ids: list[str] = params.get("InstanceIds") or []
    if instance_ids:
        duplicates = sorted({instance_id for instance_id in instance_ids if instance_ids.count(instance_id) > 1})
        if duplicates:
            raise ssm_error("DuplicateInstanceId", f"Instance Id {duplicates[0]} is specified more than once.")
        return _managed_or_reject(state, account, region, instance_ids, instances)
    return _match_targets(state, account, region, params["Targets"], instances)


def _managed_or_reject(state: SandboxState, account: str, region: str, instance_ids: list[str], instances: dict[str, Any]) -> list[ManagedInstance]:
    """The registry entries of these instances; one unmanaged or terminated instance rejects the call (as SSM does).

    Valid: registered with SSM in this account and region, instance running, pending, stopping or stopped
    (a ConnectionLost agent included: its invocation waits, Delayed). Invalid: unknown, not registered, another
    account or region, shutting-down or terminated (SSM API reference, InvalidInstanceId).
    """
    entries = []
    invalid = []
    for instance_id in instance_ids:
        entry = state.managed.get(instance_id)
        instance = instances.get(instance_id)
        if entry is None or entry.account != account or entry.region != region or instance is None or instance.state in _GONE_STATES:
            invalid.append(instance_id)
        else:
            entries.append(entry)
    if invalid:
        # AWS's message names neither the instances nor the account: the caller has to find the invalid ones itself.
        raise ssm_error("InvalidInstanceId", INVALID_INSTANCES_MESSAGE)
    return entries


def _match_targets(state: SandboxState, account: str, region: str, targets: list[dict[str, Any]], instances: dict[str, Any]) -> list[ManagedInstance]:
    """Managed, not terminated instances matching every Target (keys AND-ed, values OR-ed), in launch order."""
    keys = [target.get("Key", "") for target in targets]
    if "InstanceIds" in keys:
        if len(targets) != 1:
            raise ssm_error("ValidationException", "Targets with Key=InstanceIds cannot be combined with other targets.")
        return _managed_or_reject(state, account, region, targets[0].get("Values", []), instances)
    for key in keys:
        if not (key.startswith("tag:") or key == "tag-key"):
            raise ssm_error("InvalidTarget", f"Target key {key} is not supported; use InstanceIds, tag:<key> or tag-key.")
    managed = {entry.instance_id for entry in state.managed.in_region(account, region)}
    matched = []
    for instance_id, instance in instances.items():
        if instance_id not in managed or instance.state in _GONE_STATES:
            continue
        tags = instance_tags(instance)
        if all(_target_matches(target, tags) for target in targets):
            matched.append(state.managed.get(instance_id))
    return [entry for entry in matched if entry is not None]


def _target_matches(target: dict[str, Any], tags: dict[str, str]) -> bool:
    values = target.get("Values", [])
    if target["Key"] == "tag-key":
        return any(value in tags for value in values)
    return tags.get(target["Key"][len("tag:"):]) in values


def _plan_target(state: SandboxState, document: ResolvedDocument, parameters: dict[str, list[str]], entry: ManagedInstance, instance: Any,
                 region: str) -> PlannedInvocation:
    reachable = instance.state == "running"
    if not document.supports(entry.platform_type):
        outcome = Outcome("Failed", "InvalidPlatform", -1)
        return PlannedInvocation(Target(entry.instance_id, reachable, outcome), entry.computer_name, entry.platform_type, None)
    if document.name != RUN_PATCH_BASELINE:
        failed = state.fault_store.take("command_fail", entry.instance_id) is not None
        outcome = Outcome("Failed", "Failed", 1, script=True) if failed else Outcome("Success", "Success", 0, script=True)
        return PlannedInvocation(Target(entry.instance_id, reachable, outcome), entry.computer_name, entry.platform_type, None)

    current = state.commands.patch_state(entry.account, entry.region, entry.instance_id, entry.platform_type, state.clock.now())
    timed_out = state.fault_store.take("patch_timeout", entry.instance_id) is not None
    failing = not timed_out and state.fault_store.take("patch_fail", entry.instance_id) is not None
    tags = instance_tags(instance)
    run = patching.plan(
        current,
        operation=parameters["Operation"][0],
        reboot_option=parameters["RebootOption"][0],
        snapshot_id=parameters["SnapshotId"][0],
        install_override_list=parameters["InstallOverrideList"][0],
        baseline_id=baseline_id(region, entry),
        patch_group=next((tags[key] for key in _PATCH_GROUP_TAGS if key in tags), ""),
        fail=failing,
    )
    if timed_out:
        outcome = Outcome("TimedOut", "ExecutionTimedOut", -1)
    elif failing:
        outcome = Outcome("Failed", "Failed", 1)
    else:
        outcome = Outcome("Success", "Success", 0, reboots=run.reboots)
    return PlannedInvocation(Target(entry.instance_id, reachable, outcome), entry.computer_name, entry.platform_type, run)


@functools.lru_cache(maxsize=None)
def _default_baselines(region: str) -> dict[str, str]:
    return load_resource("ssm/resources/default_baselines.json").get(region, {})


def baseline_id(region: str, entry: ManagedInstance) -> str:
    """The AWS-provided default patch baseline for the instance's OS in this region (moto ships the table)."""
    if entry.platform_type == "Windows":
        key = "WINDOWS"
    elif entry.platform_name == "Amazon Linux" and entry.platform_version == "2023":
        key = "AMAZON_LINUX_2023"
    else:
        key = _BASELINE_OS.get(entry.platform_name, "AMAZON_LINUX_2")
    return _default_baselines(region).get(key) or f"arn:aws:ssm:{region}:000000000000:patchbaseline/pb-00000000000000000"
