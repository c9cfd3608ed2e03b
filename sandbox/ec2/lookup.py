"""Find moto EC2 instances by id or Name tag across every account and region the sandbox holds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from moto.ec2.models import ec2_backends


@dataclasses.dataclass(frozen=True)
class Located:
    account: str
    region: str
    instance: Any  # moto.ec2.models.instances.Instance


def region_instances(account: str, region: str) -> dict[str, Any]:
    """{instance id: moto Instance} for one account and region, in launch order."""
    backend = ec2_backends[account][region]
    return {instance.id: instance for reservation in list(backend.reservations.values()) for instance in reservation.instances}


def all_instances() -> Iterator[Located]:
    """Every instance in every (account, region) backend moto has created so far."""
    for account, regions in list(ec2_backends.items()):
        for region, backend in list(regions.items()):
            for reservation in list(backend.reservations.values()):
                for instance in reservation.instances:
                    yield Located(account, region, instance)


def locate(instance_ids: list[str]) -> dict[str, Located]:
    """Where each of these instances lives; ids moto does not know are left out."""
    wanted = set(instance_ids)
    return {located.instance.id: located for located in all_instances() if located.instance.id in wanted}


def locate_by_name(name: str) -> Located:
    """The one instance whose Name tag is ``name``; ValueError if there is none or several."""
    found = [located for located in all_instances() if instance_tags(located.instance).get("Name") == name]
    if len(found) != 1:
        raise ValueError(f"expected exactly one instance named {name!r}, found {len(found)}")
    return found[0]


def instance_tags(instance: Any) -> dict[str, str]:
    """The instance's tags, read straight from moto's tag table (its describe_tags scans every resource)."""
    return dict(instance.ec2_backend.tags.get(instance.id, {}))
