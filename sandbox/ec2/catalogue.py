"""Which of moto's built-in AMIs every EC2 backend loads.

moto loads ~40 base AMIs (Amazon Linux, Windows, RHEL, Ubuntu, SUSE; the same
ids in every region) plus ~1,260 per-region "latest" and ECS AMIs, each with a
volume and a snapshot. Building that for every account and region costs a
quarter of a second per backend and floods DescribeSnapshots; the patching
workflow needs only the base set, so by default the sandbox skips the
per-region catalogues (moto treats a region without a catalogue file as
having none). ``full`` restores moto's behaviour.
"""

from __future__ import annotations

from typing import Any

from moto.ec2.models import amis as amis_module

from sandbox import moto_hooks

_PER_REGION_CATALOGUES = ("ec2/resources/latest_amis/", "ec2/resources/ecs/optimized_amis/")


class _Choice:
    full = False


def _load_resource(path: str, *args: Any, **kwargs: Any) -> Any:
    if not _Choice.full and path.startswith(_PER_REGION_CATALOGUES):
        raise FileNotFoundError(path)
    return moto_hooks.original(amis_module, "load_resource")(path, *args, **kwargs)


def install(full: bool) -> None:
    _Choice.full = full
    moto_hooks.replace(amis_module, "load_resource", _load_resource)
