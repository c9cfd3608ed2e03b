"""Create a scenario's instances through boto3, register the SSM-managed ones, and arm its faults.

Every instance gets an explicit root volume at its AMI's root device (moto
drops the root volume when BlockDeviceMappings is given), plus the optional
data volume. The returned summary maps names to ids, which is what tests and
the demo need to find "the instance whose AMI will fail".
"""

from __future__ import annotations

import collections
import math
from typing import Any

from sandbox import organizations
from sandbox.seeding.clients import AccountClients
from sandbox.seeding.scenario import OPERATING_SYSTEMS, InstanceSpec, Scenario, SyntheticSpec
from sandbox.state import SandboxState

_SYNTHETIC_OS = ("amazon-linux-2", "windows-2016")


def seed(state: SandboxState, endpoint: str, scenario: Scenario | SyntheticSpec | None) -> dict[str, Any]:
    if scenario is None:
        return {"scenario": "none", "instances": [], "counts": {}, "faults": []}
    if isinstance(scenario, SyntheticSpec):
        return _seed_synthetic(state, endpoint, scenario)
    return _seed_declarative(state, endpoint, scenario)


def _clients(state: SandboxState, endpoint: str, scenario: Scenario | SyntheticSpec) -> dict[str, AccountClients]:
    for account in scenario.accounts:
        if account.role_arn:
            state.roles.register(account.role_arn, account.external_id)
    return {account.account_id: AccountClients(account, endpoint) for account in scenario.accounts}


def _block_devices(os_name: str, data_volume_gib: int | None) -> list[dict[str, Any]]:
    image = OPERATING_SYSTEMS[os_name]
    devices = [{"DeviceName": image.root_device, "Ebs": {"VolumeSize": image.root_size_gib, "VolumeType": "gp3", "DeleteOnTermination": True}}]
    if data_volume_gib:
        devices.append({"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": data_volume_gib, "VolumeType": "gp3", "DeleteOnTermination": False}})
    return devices


def _tag_specifications(tags: dict[str, str]) -> list[dict[str, Any]]:
    tag_list = [{"Key": key, "Value": value} for key, value in tags.items()]
    return [{"ResourceType": "instance", "Tags": tag_list}, {"ResourceType": "volume", "Tags": tag_list}]


def _instance_tags(scenario: Scenario, spec: InstanceSpec) -> dict[str, str]:
    tags = dict(scenario.tags) if spec.in_landing_zone else {}
    tags["Name"] = spec.name
    if spec.patch_group:
        tags["Patch Group"] = spec.patch_group
    tags.update(spec.tags)
    return tags


def _seed_declarative(state: SandboxState, endpoint: str, scenario: Scenario) -> dict[str, Any]:
    # The organization first: its members' roles must exist before the seeder assumes them.
    organization = organizations.seed(state, scenario.organization) if scenario.organization is not None else None
    clients = _clients(state, endpoint, scenario)
    ids: dict[str, str] = {}
    to_stop: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for spec in scenario.instances:
        image = OPERATING_SYSTEMS[spec.os]
        reservation = clients[spec.account].ec2(spec.region).run_instances(
            ImageId=image.image_id,
            InstanceType=image.instance_type,
            MinCount=1,
            MaxCount=1,
            BlockDeviceMappings=_block_devices(spec.os, spec.data_volume_gib),
            TagSpecifications=_tag_specifications(_instance_tags(scenario, spec)),
        )
        ids[spec.name] = reservation["Instances"][0]["InstanceId"]
        if spec.state == "stopped":
            to_stop[(spec.account, spec.region)].append(ids[spec.name])
    for (account, region), instance_ids in to_stop.items():
        clients[account].ec2(region).stop_instances(InstanceIds=instance_ids)
    for spec in scenario.instances:
        if spec.managed is not None:
            state.register_managed([ids[spec.name]], online=spec.managed == "online")
    faults = []
    for fault in scenario.faults:
        instance_id = ids[fault.instance] if fault.instance else None
        added = state.faults.add(fault.kind, instance_id=instance_id, operation=fault.operation, **fault.options)
        faults.append({**added.as_dict(), **({"instance_name": fault.instance} if fault.instance else {})})
    rows = [_row(state, scenario, spec, ids[spec.name]) for spec in scenario.instances]
    summary = {"scenario": scenario.name, "landing_zone": scenario.landing_zone, "instances": rows, "counts": _counts(rows), "faults": faults}
    if organization is not None:
        summary["organization"] = organization
    return summary


def _row(state: SandboxState, scenario: Scenario, spec: InstanceSpec, instance_id: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "instance_id": instance_id,
        "account": spec.account,
        "region": spec.region,
        "os": spec.os,
        "state": spec.state,
        "managed": spec.managed is not None,
        "ping_status": _ping(state, instance_id) if spec.managed is not None else None,
        "patch_group": spec.patch_group,
        "in_landing_zone": spec.in_landing_zone,
        "tags": _instance_tags(scenario, spec),
    }


def _ping(state: SandboxState, instance_id: str) -> str:
    from sandbox.ec2.lookup import locate  # pylint: disable=import-outside-toplevel

    entry = state.managed.get(instance_id)
    located = locate([instance_id]).get(instance_id)
    return state.managed.status(entry, located.instance if located else None) if entry else "Unmanaged"


def _counts(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per "account/region": instances, running, stopped, managed, in the landing zone."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        cell = counts.setdefault(f"{row['account']}/{row['region']}", {"instances": 0, "running": 0, "stopped": 0, "managed": 0, "in_landing_zone": 0})
        cell["instances"] += 1
        cell[row["state"]] += 1
        cell["managed"] += int(row["managed"])
        cell["in_landing_zone"] += int(row["in_landing_zone"])
    return dict(sorted(counts.items()))


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole numbers (larger ones first)."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def _picked(index: int, ratio: float) -> bool:
    """Spread a ratio evenly over a sequence: item ``index`` is picked when the running count steps up."""
    return math.floor((index + 1) * ratio) > math.floor(index * ratio)


SCAN_AGE = 2 * 3600  # seconds between the seeded scan's report and the fleet being handed over


def _last_patch_scan(state: SandboxState, clients: dict[str, AccountClients], rows: list[dict[str, Any]]) -> None:
    """The patch state a fleet with a daily scan has: an AWS-RunPatchBaseline Scan on these instances, ended and reported.

    Sent through the sandbox's own SendCommand, 50 instances a command (internal: neither counted nor answered with an
    injected error; a patch_fail/patch_timeout fault added before seeding would be used up by it). Then the clock moves
    past the slowest scan and the agents' compliance report, so DescribeInstancePatchStates answers for each, and on by
    SCAN_AGE: the scan ran earlier in the day, before the hour a run looks back for its own commands (ListCommands from
    an hour before its first AMI), as a daily scan would.
    """
    by_location: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for row in rows:
        by_location[(row["account"], row["region"])].append(row["instance_id"])
    for (account, region), instance_ids in sorted(by_location.items()):
        ssm = clients[account].ssm(region)
        for start in range(0, len(instance_ids), 50):
            ssm.send_command(
                DocumentName="AWS-RunPatchBaseline",
                InstanceIds=instance_ids[start : start + 50],
                Parameters={"Operation": ["Scan"]},
                Comment="sandbox seed: the fleet's last patch scan",
                MaxConcurrency="50",
                TimeoutSeconds=600,
            )
    settings = state.settings
    slowest = max(settings.invocation_seconds, settings.invocation_max_seconds)
    state.clock.advance(slowest + settings.compliance_delay_seconds + 60 + SCAN_AGE)


def _seed_synthetic(state: SandboxState, endpoint: str, spec: SyntheticSpec) -> dict[str, Any]:
    clients = _clients(state, endpoint, spec)
    cells = [(account.account_id, region) for account in spec.accounts for region in spec.regions]
    per_cell = _spread(spec.count, len(cells))
    reservations_per_cell = _spread(max(spec.reservations, len(cells)), len(cells))
    rows: list[dict[str, Any]] = []
    reservation_index = 0
    for (account, region), cell_count, cell_reservations in zip(cells, per_cell, reservations_per_cell):
        ec2 = clients[account].ec2(region)
        first_row = len(rows)
        for size in _spread(cell_count, cell_reservations):
            if size == 0:
                continue
            os_name = _SYNTHETIC_OS[1] if _picked(reservation_index, spec.windows_ratio) else _SYNTHETIC_OS[0]
            patch_group = spec.patch_groups[reservation_index % len(spec.patch_groups)] if spec.patch_groups else None
            tags = {"Environment": spec.environment, **({"Patch Group": patch_group} if patch_group else {})}
            reservation = ec2.run_instances(
                ImageId=OPERATING_SYSTEMS[os_name].image_id,
                InstanceType=OPERATING_SYSTEMS[os_name].instance_type,
                MinCount=size,
                MaxCount=size,
                BlockDeviceMappings=_block_devices(os_name, None),
                TagSpecifications=_tag_specifications(tags),
            )
            for instance in reservation["Instances"]:
                name = f"{spec.name_prefix}-{len(rows) + 1:05d}"
                ec2.create_tags(Resources=[instance["InstanceId"]], Tags=[{"Key": "Name", "Value": name}])
                rows.append({"name": name, "instance_id": instance["InstanceId"], "account": account, "region": region, "os": os_name,
                             "state": "running", "managed": _picked(len(rows), spec.managed_ratio), "patch_group": patch_group,
                             "in_landing_zone": True})
            reservation_index += 1
        stopping = []
        for index in range(first_row, len(rows)):
            if _picked(index, spec.stopped_ratio):
                rows[index]["state"] = "stopped"
                stopping.append(rows[index]["instance_id"])
        if stopping:
            ec2.stop_instances(InstanceIds=stopping)
    state.register_managed([row["instance_id"] for row in rows if row["managed"]])
    if spec.patch_scanned:
        _last_patch_scan(state, clients, [row for row in rows if row["managed"] and row["state"] == "running"])
    return {"scenario": "synthetic", "landing_zone": spec.environment, "instances": rows, "counts": _counts(rows), "faults": []}
