"""Scenario specs: load a named or file scenario (YAML) or an inline dict, and check it.

A declarative scenario lists accounts, regions, instances and faults by
instance Name (see ``scenarios/demo.yml``). A synthetic scenario
(``{"synthetic": {...}}``) describes a large fleet by counts and ratios.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import yaml

from sandbox import organizations
from sandbox.seeding.clients import Account

SCENARIO_DIR = pathlib.Path(__file__).resolve().parent.parent / "scenarios"


@dataclasses.dataclass(frozen=True)
class OsImage:
    """A moto default AMI present in every region, with the root device AWS uses for it."""

    image_id: str
    root_device: str
    root_size_gib: int
    instance_type: str


OPERATING_SYSTEMS = {
    "amazon-linux-2": OsImage("ami-04681a1dbd79675a5", "/dev/xvda", 8, "t3.micro"),
    "windows-2016": OsImage("ami-b7e93bce", "/dev/sda1", 30, "t3.medium"),
    "rhel-7": OsImage("ami-bb9a6bc2", "/dev/sda1", 10, "t3.micro"),
    "ubuntu-16.04": OsImage("ami-785db401", "/dev/sda1", 8, "t3.micro"),
}
MANAGED_CHOICES = {"online": True, "connection-lost": False}


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    name: str
    account: str
    region: str
    os: str = "amazon-linux-2"
    state: str = "running"
    managed: str | None = "online"  # online | connection-lost | None (no SSM agent)
    patch_group: str | None = None
    data_volume_gib: int | None = None
    in_landing_zone: bool = True
    tags: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class FaultSpec:
    kind: str
    instance: str | None
    operation: str | None
    options: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    landing_zone: str
    accounts: tuple[Account, ...]
    regions: tuple[str, ...]
    tags: dict[str, str]
    instances: tuple[InstanceSpec, ...]
    faults: tuple[FaultSpec, ...]
    # An AWS Organizations tree seeded before the instances (sandbox/organizations.py); its members with a role are accounts too.
    organization: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    count: int
    accounts: tuple[Account, ...]
    regions: tuple[str, ...]
    managed_ratio: float = 0.9
    reservations: int = 10
    windows_ratio: float = 0.2
    stopped_ratio: float = 0.0
    environment: str = "demo"
    name_prefix: str = "syn"
    patch_groups: tuple[str, ...] = ("web", "db", "app")
    # Every running managed instance already has a patch state, as in a fleet that a daily patch scan (a State Manager
    # association or a patch policy) reports on: AWS answers DescribeInstancePatchStates only for an instance some
    # AWS-RunPatchBaseline has run on, and a fresh synthetic fleet has none.
    patch_scanned: bool = False


def load(source: str | dict[str, Any] | None) -> Scenario | SyntheticSpec | None:
    """``"demo"`` (any file in scenarios/), ``"none"``/None, a YAML path, or an inline spec dict."""
    if source is None or source == "none":
        return None
    if isinstance(source, str):
        path = SCENARIO_DIR / f"{source}.yml"
        if not path.is_file():
            path = pathlib.Path(source)
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yml")))
            raise ValueError(f"no scenario {source!r}: not a file, and not one of: {known}, none")
        source = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(source, dict):
        raise ValueError("a scenario must be a mapping")
    if "synthetic" in source:
        return _synthetic(source["synthetic"])
    return _declarative(source)


def _accounts(items: list[Any]) -> tuple[tuple[Account, ...], dict[str, str]]:
    """Accounts, and the alias -> id table instances may refer to them by."""
    accounts = []
    aliases = {}
    for item in items:
        if isinstance(item, (str, int)):
            item = {"id": str(item)}
        account_id = str(item["id"])
        if not (len(account_id) == 12 and account_id.isdigit()):
            raise ValueError(f"account id must be 12 digits, got {account_id!r}")
        accounts.append(Account(account_id, item.get("role_arn"), item.get("external_id")))
        aliases[account_id] = account_id
        if item.get("alias"):
            aliases[str(item["alias"])] = account_id
    return tuple(accounts), aliases


def _declarative(spec: dict[str, Any]) -> Scenario:
    listed = list(spec.get("accounts") or [])
    organization = spec.get("organization")
    if organization is not None:
        if not isinstance(organization, dict):
            raise ValueError("organization must be a mapping (see sandbox/organizations.py)")
        ids = {str(item["id"] if isinstance(item, dict) else item) for item in listed}
        listed += [member for member in organizations.member_accounts(organization) if member["id"] not in ids]
    accounts, aliases = _accounts(listed)
    regions = tuple(spec.get("regions") or ())
    instances = []
    for item in spec.get("instances") or []:
        unknown = set(item) - {field.name for field in dataclasses.fields(InstanceSpec)}
        if unknown:
            raise ValueError(f"instance {item.get('name')!r}: unknown field(s) {sorted(unknown)}")
        account = aliases.get(str(item.get("account")))
        if account is None:
            raise ValueError(f"instance {item.get('name')!r}: account {item.get('account')!r} is not one of the scenario's accounts")
        instance = InstanceSpec(**{**item, "account": account, "tags": dict(item.get("tags") or {})})
        if instance.region not in regions:
            raise ValueError(f"instance {instance.name!r}: region {instance.region!r} is not one of the scenario's regions {list(regions)}")
        if instance.os not in OPERATING_SYSTEMS:
            raise ValueError(f"instance {instance.name!r}: os must be one of {sorted(OPERATING_SYSTEMS)}")
        if instance.managed is not None and instance.managed not in MANAGED_CHOICES:
            raise ValueError(f"instance {instance.name!r}: managed must be one of {sorted(MANAGED_CHOICES)} or null")
        if instance.state not in ("running", "stopped"):
            raise ValueError(f"instance {instance.name!r}: state must be running or stopped")
        instances.append(instance)
    names = [instance.name for instance in instances]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"instance names must be unique; repeated: {duplicates}")
    faults = []
    for item in spec.get("faults") or []:
        options = {key: value for key, value in item.items() if key not in ("kind", "instance", "operation")}
        if item.get("instance") is not None and item["instance"] not in names:
            raise ValueError(f"fault {item['kind']!r} names instance {item['instance']!r}, which the scenario does not define")
        faults.append(FaultSpec(item["kind"], item.get("instance"), item.get("operation"), options))
    return Scenario(
        name=str(spec.get("name", "inline")),
        landing_zone=str(spec.get("landing_zone", spec.get("name", "inline"))),
        accounts=accounts,
        regions=regions,
        tags={str(key): str(value) for key, value in (spec.get("tags") or {}).items()},
        instances=tuple(instances),
        faults=tuple(faults),
        organization=organization,
    )


def _synthetic(spec: dict[str, Any]) -> SyntheticSpec:
    known = {field.name for field in dataclasses.fields(SyntheticSpec)}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"synthetic: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    accounts = _accounts(spec.get("accounts") or ["123456789012"])[0]
    accounts = tuple(
        account if account.role_arn or account.account_id == "123456789012"
        else Account(account.account_id, f"arn:aws:iam::{account.account_id}:role/CmsPatchingRole", account.external_id)
        for account in accounts
    )
    values = {**spec, "accounts": accounts, "regions": tuple(spec.get("regions") or ("us-east-1",))}
    if "patch_groups" in values:
        values["patch_groups"] = tuple(values["patch_groups"])
    synthetic = SyntheticSpec(**values)
    if synthetic.count < 1:
        raise ValueError("synthetic: count must be at least 1")
    for ratio in ("managed_ratio", "windows_ratio", "stopped_ratio"):
        if not 0 <= getattr(synthetic, ratio) <= 1:
            raise ValueError(f"synthetic: {ratio} must be between 0 and 1")
    return synthetic
