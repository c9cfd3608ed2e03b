"""DescribeInstanceProperties: the managed registry as SSM's newer per-node listing (1,000 nodes a page).

Follows the SSM API reference, DescribeInstanceProperties
(https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DescribeInstanceProperties.html),
InstancePropertyFilter, InstancePropertyStringFilter and InstanceProperty:

- MaxResults 5..1000 (``ValidationException`` outside); NextToken paging (a token it did not issue: ``InvalidNextToken``).
- ``InstancePropertyFilterList`` (``key`` / ``valueSet``, keys InstanceIds | AgentVersion | PingStatus | PlatformTypes |
  DocumentName | ActivationIds | IamRole | ResourceType | AssociationStatus) and ``FiltersWithOperator`` (``Key`` /
  ``Values`` / ``Operator`` Equal | NotEqual | BeginWith | LessThan | GreaterThan, Equal when left out). At most 40
  filters per list and 40 values per filter (``ValidationException``); an unknown key ``InvalidFilterKey``; a value
  outside a key's documented set ``InvalidInstancePropertyFilterValue``; a malformed instance ID ``InvalidInstanceId``,
  a malformed activation ID ``InvalidActivationId``.
- Every node is the same registry entry DescribeInstanceInformation answers from (``information_view``), so PingStatus is
  the agent's state as everywhere else: ``agent_offline`` faults, stopped instances, a root-volume replacement's reboot
  (``sandbox/ec2/rollback.py`` patches ``managed.ping_status``) all show here too, offline nodes included.

What AWS does not document, and the sandbox chooses: the valid keys of ``FiltersWithOperator`` (the
InstancePropertyFilter keys are taken); LessThan / GreaterThan with more than one value (refused,
``InvalidInstancePropertyFilterValue``; one value compares AgentVersion as a version, anything else as text); both lists
in one request (both apply); the MaxResults default (50); DocumentName (the sandbox has no State Manager associations,
so it matches no node).
"""

from __future__ import annotations

import json
import re
from typing import Any

from moto.core.responses import ActionResult
from moto.ssm.responses import SimpleSystemManagerResponse

from sandbox import runtime
from sandbox.clock import to_datetime
from sandbox.ec2.lookup import instance_tags, region_instances
from sandbox.errors import ConstraintViolations, ssm_error
from sandbox.paging import page
from sandbox.ssm.managed import ManagedInstance
from sandbox.state import SandboxState

MAX_RESULTS = (5, 1000)
DEFAULT_MAX_RESULTS = 50
LIST_MAX = 40
OPERATORS = ("Equal", "NotEqual", "BeginWith", "LessThan", "GreaterThan")
# key -> the node field it matches (None: a field EC2 instances never have, e.g. a hybrid activation)
KEYS = {
    "InstanceIds": "InstanceId",
    "AgentVersion": "AgentVersion",
    "PingStatus": "PingStatus",
    "PlatformTypes": "PlatformType",
    "DocumentName": None,
    "ActivationIds": "ActivationId",
    "IamRole": "IamRole",
    "ResourceType": "ResourceType",
    "AssociationStatus": "AssociationStatus",
}
# The values AWS documents for these keys (InstanceProperty's enums; InstanceInformationStringFilter's lists).
VALUE_SETS = {
    "PingStatus": {"Online", "ConnectionLost", "Inactive"},
    "PlatformTypes": {"Windows", "Linux", "MacOS"},
    "ResourceType": {"EC2Instance", "ManagedInstance"},
    "AssociationStatus": {"Success", "Pending", "Failed"},
}
# InstanceProperty.InstanceId / ActivationId patterns.
INSTANCE_ID = re.compile(r"(i-(\w{8}|\w{17}))|(mi-\w{17})")
ACTIVATION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def information_view(state: SandboxState, entry: ManagedInstance, instance: Any | None) -> dict[str, Any]:
    """The fields DescribeInstanceInformation and DescribeInstanceProperties share for one managed EC2 instance."""
    return {
        "InstanceId": entry.instance_id,
        "PingStatus": state.managed.status(entry, instance),
        "LastPingDateTime": to_datetime(state.managed.last_ping(entry, instance)),
        "AgentVersion": entry.agent_version,
        "PlatformType": entry.platform_type,
        "PlatformName": entry.platform_name,
        "PlatformVersion": entry.platform_version,
        "RegistrationDate": to_datetime(entry.registered_at),
        "ResourceType": "EC2Instance",
        "IPAddress": entry.ip_address,
        "ComputerName": entry.computer_name,
        "AssociationStatus": "Success",
        "SourceId": entry.instance_id,
        "SourceType": "AWS::EC2::Instance",
    }


def _property_view(state: SandboxState, entry: ManagedInstance, instance: Any | None, tags: dict[str, str]) -> dict[str, Any]:
    """InstanceProperty: the shared fields plus what SSM reads from EC2 for an EC2 node (left out once the instance is gone)."""
    view = information_view(state, entry, instance)
    if instance is not None:
        view.update(
            Name=tags.get("Name", ""),
            InstanceType=instance.instance_type,
            InstanceState=instance.state,
            Architecture=instance.architecture or "",
            AvailabilityZone=instance.placement.zone or "",
            KeyName=instance.key_name or "",
        )
        if instance.launch_time:
            view["LaunchTime"] = instance.launch_time
    return view


def _filters(params: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(key, operator, values) of both filter lists, validated as the reference constrains them."""
    legacy = params.get("InstancePropertyFilterList") or []
    modern = params.get("FiltersWithOperator") or []
    violations = ConstraintViolations()
    violations.max_length("instancePropertyFilterList", legacy, LIST_MAX)
    violations.max_length("filtersWithOperator", modern, LIST_MAX)
    filters = []
    for index, item in enumerate(legacy, 1):
        values = item.get("valueSet") or []
        violations.max_length(f"instancePropertyFilterList.{index}.member.valueSet", values, LIST_MAX)
        filters.append((item.get("key", ""), "Equal", values))
    for index, item in enumerate(modern, 1):
        values = item.get("Values") or []
        violations.max_length(f"filtersWithOperator.{index}.member.values", values, LIST_MAX)
        operator = item.get("Operator") or "Equal"
        if operator not in OPERATORS:
            violations.add(f"filtersWithOperator.{index}.member.operator", operator, "Member must satisfy enum value set: [" + ", ".join(OPERATORS) + "]")
        filters.append((item.get("Key", ""), operator, values))
    violations.raise_if_any()
    for key, operator, values in filters:
        _check_filter(key, operator, values)
    return filters


def _check_filter(key: str, operator: str, values: list[str]) -> None:
    if key not in KEYS:
        raise ssm_error("InvalidFilterKey", f"The filter key {key} is not valid. Valid keys: {', '.join(KEYS)}.")
    if not values:
        raise ssm_error("InvalidInstancePropertyFilterValue", f"The filter {key} needs at least one value.")
    if operator in ("LessThan", "GreaterThan") and len(values) != 1:
        raise ssm_error("InvalidInstancePropertyFilterValue", f"The operator {operator} takes exactly one value for {key}.")
    allowed = VALUE_SETS.get(key)
    if allowed is not None and operator in ("Equal", "NotEqual"):
        wrong = [value for value in values if value not in allowed]
        if wrong:
            raise ssm_error("InvalidInstancePropertyFilterValue", f"{', '.join(wrong)} is not a valid {key} value ({' | '.join(sorted(allowed))}).")
    if key == "InstanceIds" and operator in ("Equal", "NotEqual"):
        wrong = [value for value in values if not INSTANCE_ID.fullmatch(value)]
        if wrong:
            raise ssm_error("InvalidInstanceId", f"Instance ID {wrong[0]} is not valid.")
    if key == "ActivationIds" and operator in ("Equal", "NotEqual"):
        wrong = [value for value in values if not ACTIVATION_ID.fullmatch(value)]
        if wrong:
            raise ssm_error("InvalidActivationId", f"Activation ID {wrong[0]} is not valid.")


def _version(text: str) -> tuple[int, ...] | None:
    parts = text.split(".")
    return tuple(int(part) for part in parts) if all(part.isdigit() for part in parts) else None


def _compare(key: str, actual: str, wanted: str) -> int:
    """-1 / 0 / 1: agent versions numerically (3.10 > 3.9), anything else as text."""
    left, right = (_version(actual), _version(wanted)) if key == "AgentVersion" else (None, None)
    if left is None or right is None:
        left, right = actual, wanted  # type: ignore[assignment]
    return (left > right) - (left < right)  # type: ignore[operator]


def _matches(view: dict[str, Any], filters: list[tuple[str, str, list[str]]]) -> bool:
    for key, operator, values in filters:
        field = KEYS[key]
        actual = view.get(field) if field else None
        if actual is None:
            # A field the node does not have (DocumentName, ActivationIds, IamRole of an EC2 instance) matches no value.
            matched = operator == "NotEqual"
        elif operator == "Equal":
            matched = actual in values
        elif operator == "NotEqual":
            matched = actual not in values
        elif operator == "BeginWith":
            matched = any(str(actual).startswith(value) for value in values)
        elif operator == "LessThan":
            matched = _compare(key, str(actual), values[0]) < 0
        else:
            matched = _compare(key, str(actual), values[0]) > 0
        if not matched:
            return False
    return True


def describe_instance_properties(self: SimpleSystemManagerResponse) -> ActionResult:
    params = json.loads(self.body) if self.body else {}
    state, account, region = runtime.current(), self.current_account, self.region
    violations = ConstraintViolations()
    violations.value_range("maxResults", params.get("MaxResults"), *MAX_RESULTS)
    violations.raise_if_any()
    filters = _filters(params)
    with state.lock:
        instances = region_instances(account, region)
        found = []
        for entry in state.managed.in_region(account, region):
            instance = instances.get(entry.instance_id)
            view = _property_view(state, entry, instance, instance_tags(instance) if instance is not None else {})
            if _matches(view, filters):
                found.append(view)
    items, token = page(found, params.get("MaxResults", DEFAULT_MAX_RESULTS), params.get("NextToken"),
                        lambda: ssm_error("InvalidNextToken", "The specified token isn't valid."))
    return ActionResult({"InstanceProperties": items, "NextToken": token})
