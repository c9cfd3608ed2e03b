"""The SSM operations the sandbox answers itself, installed as methods of moto's SSM response class.

moto dispatches an SSM request to the ``SimpleSystemManagerResponse`` method
named after the operation; the functions here replace moto's send_command /
list_commands / get_command_invocation (which ignore targets, filters and
time) and add the operations moto lacks. Each reads the caller's account and
region from the response object and the sandbox state from ``runtime``.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.ssm.models import SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse

from sandbox import moto_hooks, runtime
from sandbox.clock import to_datetime
from sandbox.ec2.lookup import instance_tags, region_instances
from sandbox.errors import ConstraintViolations, ssm_error
from sandbox.paging import page
from sandbox.ssm import parameters, patching, schedule
from sandbox.ssm.commands import CommandRecord
from sandbox.ssm.documents import install_aws_documents
from sandbox.ssm.managed import LATEST_AGENT_VERSION
from sandbox.ssm.properties import describe_instance_properties, information_view
from sandbox.ssm.send_command import INSTANCE_ID, plan_command
from sandbox.ssm.views import command_view, get_invocation_view, invocation_view
from sandbox.state import SandboxState

_INSTANCE_INFORMATION_KEYS = {"InstanceIds", "AgentVersion", "PingStatus", "PlatformTypes", "ActivationIds", "IamRole", "ResourceType",
                              "AssociationStatus", "SourceIds", "SourceTypes"}
_PATCH_FILTER_KEYS = {"Classification": "Classification", "KBId": "KBId", "Severity": "Severity", "State": "State"}


def _invalid_token() -> Exception:
    return ssm_error("InvalidNextToken", "The specified token isn't valid.")


def _request(response: SimpleSystemManagerResponse) -> tuple[SandboxState, str, str, dict[str, Any]]:
    params = json.loads(response.body) if response.body else {}
    return runtime.current(), response.current_account, response.region, params


def _max_results(params: dict[str, Any], low: int, high: int, default: int | None) -> int | None:
    violations = ConstraintViolations()
    violations.value_range("maxResults", params.get("MaxResults"), low, high)
    violations.raise_if_any()
    return params.get("MaxResults", default)


def _command(state: SandboxState, account: str, region: str, command_id: str) -> CommandRecord:
    command = state.commands.get(account, region, command_id)
    if command is None:
        raise ssm_error("InvalidCommandId", f"Command ID {command_id} is not valid.")
    return command


# --- Run Command ------------------------------------------------------------------------------------------------------------------


def send_command(self: SimpleSystemManagerResponse) -> ActionResult:
    state, account, region, params = _request(self)
    with state.lock:
        command = plan_command(state, account, region, params)
        state.commands.add(command)
        return ActionResult({"Command": command_view(command, state.commands.timelines(command), state.now())})


def _filter_predicates(filters: list[dict[str, str]], listing_commands: bool) -> list[Any]:
    """Predicates over (Status, StatusDetails, RequestedDateTime, DocumentName, finished) for ListCommands/ListCommandInvocations filters."""
    keys = {"InvokedAfter", "InvokedBefore", "Status", "DocumentName"} | ({"ExecutionStage"} if listing_commands else set())
    predicates = []
    for item in filters:
        key, value = item.get("key"), item.get("value", "")
        if key not in keys:
            raise ssm_error("InvalidFilterKey", f"The filter key {key} is not valid for this operation.")
        if key in ("InvokedAfter", "InvokedBefore"):
            try:
                moment = datetime.datetime.fromisoformat(value).timestamp()
            except ValueError:
                raise ssm_error("InvalidFilterValue", f"{value} is not a valid ISO-8601 date-time for {key}.") from None
            if key == "InvokedAfter":
                predicates.append(lambda row, moment=moment: row["requested"] >= moment)
            else:
                predicates.append(lambda row, moment=moment: row["requested"] <= moment)
        elif key == "Status":
            predicates.append(lambda row, value=value: value in (row["status"], row["details"]))
        elif key == "DocumentName":
            predicates.append(lambda row, value=value: row["document"] == value)
        elif value not in ("Executing", "Complete"):
            raise ssm_error("InvalidFilterValue", f"ExecutionStage must be Executing or Complete, not {value}.")
        else:
            predicates.append(lambda row, value=value: row["finished"] == (value == "Complete"))
    return predicates


def _selected_commands(state: SandboxState, account: str, region: str, params: dict[str, Any]) -> list[CommandRecord]:
    if params.get("CommandId"):
        return [_command(state, account, region, params["CommandId"])]
    return state.commands.in_region(account, region)


def list_commands(self: SimpleSystemManagerResponse) -> ActionResult:
    state, account, region, params = _request(self)
    max_results = _max_results(params, 1, 50, 50)
    predicates = _filter_predicates(params.get("Filters") or [], listing_commands=True)
    now = state.now()
    with state.lock:
        views = []
        for command in _selected_commands(state, account, region, params):
            if params.get("InstanceId") and params["InstanceId"] not in command.instance_ids():
                continue
            view = command_view(command, state.commands.timelines(command), now)
            row = {"requested": command.requested_at, "status": view["Status"], "details": view["StatusDetails"],
                   "document": command.document.name, "finished": view["Status"] in schedule.TERMINAL}
            if all(predicate(row) for predicate in predicates):
                views.append(view)
    commands, token = page(views, max_results, params.get("NextToken"), _invalid_token)
    return ActionResult({"Commands": commands, "NextToken": token})


def list_command_invocations(self: SimpleSystemManagerResponse) -> ActionResult:
    state, account, region, params = _request(self)
    max_results = _max_results(params, 1, 50, 50)
    predicates = _filter_predicates(params.get("Filters") or [], listing_commands=False)
    details = bool(params.get("Details"))
    now = state.now()
    with state.lock:
        rows = []
        for command in _selected_commands(state, account, region, params):
            for planned, timeline in zip(command.invocations, state.commands.timelines(command)):
                if params.get("InstanceId") and planned.target.instance_id != params["InstanceId"]:
                    continue
                phase = timeline.at(now)
                row = {"requested": command.requested_at, "status": phase.status, "details": phase.details, "document": command.document.name,
                       "finished": phase.status in schedule.TERMINAL}
                if all(predicate(row) for predicate in predicates):
                    rows.append((command, planned, timeline))
        selected, token = page(rows, max_results, params.get("NextToken"), _invalid_token)
        invocations = [invocation_view(command, planned, timeline, now, details) for command, planned, timeline in selected]
    return ActionResult({"CommandInvocations": invocations, "NextToken": token})


def get_command_invocation(self: SimpleSystemManagerResponse) -> ActionResult:
    state, account, region, params = _request(self)
    with state.lock:
        command = _command(state, account, region, params["CommandId"])
        for planned, timeline in zip(command.invocations, state.commands.timelines(command)):
            if planned.target.instance_id == params["InstanceId"]:
                return ActionResult(get_invocation_view(command, planned, timeline, state.now(), params.get("PluginName")))
    raise ssm_error("InvocationDoesNotExist", f"Command {params['CommandId']} has no invocation on instance {params['InstanceId']}.")


def cancel_command(self: SimpleSystemManagerResponse) -> ActionResult:
    state, account, region, params = _request(self)
    instance_ids = params.get("InstanceIds") or []
    violations = ConstraintViolations()
    violations.max_length("instanceIds", instance_ids, 50)
    violations.raise_if_any()
    if len(set(instance_ids)) != len(instance_ids):
        raise ssm_error("DuplicateInstanceId", "An instance ID is specified more than once.")
    with state.lock:
        command = _command(state, account, region, params["CommandId"])
        unknown = [instance_id for instance_id in instance_ids if instance_id not in command.instance_ids()]
        if unknown:
            raise ssm_error("InvalidInstanceId", f"Instances [[{', '.join(unknown)}]] are not targets of command {command.command_id}")
        state.commands.cancel(command, instance_ids)
    return EmptyResult()


# --- Managed instances ------------------------------------------------------------------------------------------------------------


def _information_filters(params: dict[str, Any]) -> list[tuple[str, list[str]]]:
    legacy = params.get("InstanceInformationFilterList") or []
    modern = params.get("Filters") or []
    if legacy and modern:
        raise ssm_error("ValidationException", "InstanceInformationFilterList and Filters cannot be used in the same request.")
    filters = [(item.get("key", ""), item.get("valueSet", [])) for item in legacy] + [(item.get("Key", ""), item.get("Values", [])) for item in modern]
    for key, values in filters:
        allowed = key in _INSTANCE_INFORMATION_KEYS or (bool(modern) and (key == "tag-key" or key.startswith("tag:")))
        if not allowed:
            raise ssm_error("InvalidFilterKey", f"The filter key {key} is not valid.")
        if not values:
            raise ssm_error("InvalidInstanceInformationFilterValue", f"The filter {key} needs at least one value.")
    return filters


def _information_matches(info: dict[str, Any], tags: dict[str, str], filters: list[tuple[str, list[str]]]) -> bool:
    fields = {"InstanceIds": "InstanceId", "AgentVersion": "AgentVersion", "PingStatus": "PingStatus", "PlatformTypes": "PlatformType",
              "ResourceType": "ResourceType", "AssociationStatus": "AssociationStatus", "SourceIds": "SourceId", "SourceTypes": "SourceType"}
    for key, values in filters:
        if key == "tag-key":
            matched = any(value in tags for value in values)
        elif key.startswith("tag:"):
            matched = tags.get(key[len("tag:"):]) in values
        elif key in fields:
            matched = str(info.get(fields[key])) in values
        else:  # ActivationIds, IamRole: EC2 instances have neither
            matched = False
        if not matched:
            return False
    return True


def describe_instance_information(self: SimpleSystemManagerResponse) -> ActionResult:
    state, account, region, params = _request(self)
    max_results = _max_results(params, 5, 50, 10)
    filters = _information_filters(params)
    with state.lock:
        instances = region_instances(account, region)
        found = []
        for entry in state.managed.in_region(account, region):
            instance = instances.get(entry.instance_id)
            info = information_view(state, entry, instance)
            info["IsLatestVersion"] = entry.agent_version == LATEST_AGENT_VERSION
            if _information_matches(info, instance_tags(instance) if instance is not None else {}, filters):
                found.append(info)
    items, token = page(found, max_results, params.get("NextToken"), _invalid_token)
    return ActionResult({"InstanceInformationList": items, "NextToken": token})


# --- Patch compliance -------------------------------------------------------------------------------------------------------------


def describe_instance_patch_states(self: SimpleSystemManagerResponse) -> ActionResult:
    state, account, region, params = _request(self)
    instance_ids = params.get("InstanceIds") or []
    violations = ConstraintViolations()
    violations.max_length("instanceIds", instance_ids, 50)
    violations.value_range("maxResults", params.get("MaxResults"), 10, 100)
    violations.raise_if_any()
    now = state.now()
    with state.lock:
        found = []
        for instance_id in instance_ids:
            entry = state.managed.get(instance_id)
            if entry is None or (entry.account, entry.region) != (account, region):
                continue
            patch_state = state.commands.patch_state(account, region, instance_id, entry.platform_type, now, reported=True)
            run = patch_state.last_run
            if run is None:
                continue
            item: dict[str, Any] = {
                "InstanceId": instance_id,
                "PatchGroup": run.patch_group,
                "BaselineId": run.baseline_id,
                "OwnerInformation": "",
                "OperationStartTime": to_datetime(patch_state.last_start),
                "OperationEndTime": to_datetime(patch_state.last_end),
                "Operation": run.operation,
                "RebootOption": run.reboot_option,
                **patching.counts(patch_state),
            }
            if run.snapshot_id:
                item["SnapshotId"] = run.snapshot_id
            if run.install_override_list:
                item["InstallOverrideList"] = run.install_override_list
            if patch_state.last_no_reboot_install is not None:
                item["LastNoRebootInstallOperationTime"] = to_datetime(patch_state.last_no_reboot_install)
            found.append(item)
    items, token = page(found, params.get("MaxResults", 10), params.get("NextToken"), _invalid_token)
    return ActionResult({"InstancePatchStates": items, "NextToken": token})


def describe_instance_patches(self: SimpleSystemManagerResponse) -> ActionResult:
    state, account, region, params = _request(self)
    max_results = _max_results(params, 10, 100, 10)
    instance_id = params["InstanceId"]
    if not INSTANCE_ID.fullmatch(instance_id):
        raise ssm_error("InvalidInstanceId", f"Instance ID {instance_id} is not valid.")
    filters = params.get("Filters") or []
    for item in filters:
        if item.get("Key") not in _PATCH_FILTER_KEYS:
            raise ssm_error("InvalidFilter", f"The filter key {item.get('Key')} is not valid; use Classification, KBId, Severity or State.")
    with state.lock:
        entry = state.managed.get(instance_id)
        if entry is None or (entry.account, entry.region) != (account, region):
            raise ssm_error("InvalidInstanceId", f"Instance {instance_id} is not a managed instance in this account and region.")
        patch_state = state.commands.patch_state(account, region, instance_id, entry.platform_type, state.now(), reported=True)
        rows = [] if patch_state.last_run is None else patching.patches(patch_state, entry.registered_at)
    rows = [row for row in rows if all(row[_PATCH_FILTER_KEYS[item["Key"]]] in item.get("Values", []) for item in filters)]
    items, token = page(rows, max_results, params.get("NextToken"), _invalid_token)
    return ActionResult({"Patches": items, "NextToken": token})


_OPERATIONS = (
    send_command,
    list_commands,
    list_command_invocations,
    get_command_invocation,
    cancel_command,
    describe_instance_information,
    describe_instance_properties,
    describe_instance_patch_states,
    describe_instance_patches,
)


def _init_with_aws_documents(backend: SimpleSystemManagerBackend, region_name: str, account_id: str) -> None:
    moto_hooks.original(SimpleSystemManagerBackend, "__init__")(backend, region_name, account_id)
    install_aws_documents(backend)


def install() -> None:
    """Put the operations on moto's SSM response class and the AWS documents into every SSM backend."""
    for operation in _OPERATIONS:
        moto_hooks.replace(SimpleSystemManagerResponse, operation.__name__, operation)
    moto_hooks.replace(SimpleSystemManagerBackend, "__init__", _init_with_aws_documents)
    parameters.install()
