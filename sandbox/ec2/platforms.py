"""What operating system an instance or AMI runs, the way EC2 and SSM report it.

moto puts ``Linux/UNIX`` into ``Platform`` for some AMIs (AWS only ever sets
``windows`` there) and never returns ``PlatformDetails``. EC2's billing product
(``PlatformDetails`` / ``UsageOperation``) and SSM's ``PlatformName`` /
``PlatformVersion`` are derived here from the AMI's platform and name.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

WINDOWS = "windows"


@dataclasses.dataclass(frozen=True)
class OsInfo:
    platform: str | None  # EC2 Platform: "windows" or None
    platform_details: str  # EC2 PlatformDetails (billing product)
    usage_operation: str  # EC2 UsageOperation
    platform_type: str  # SSM PlatformType: Windows | Linux
    platform_name: str  # SSM PlatformName
    platform_version: str  # SSM PlatformVersion


# (pattern on the AMI name, SSM platform name, SSM version, EC2 PlatformDetails, UsageOperation)
_LINUX_FAMILIES: tuple[tuple[str, str, str, str, str], ...] = (
    (r"amzn2-|amazon-eks", "Amazon Linux", "2", "Linux/UNIX", "RunInstances"),
    (r"al202[23]", "Amazon Linux", "2023", "Linux/UNIX", "RunInstances"),
    (r"amzn-ami|amazon ?linux", "Amazon Linux AMI", "2018.03", "Linux/UNIX", "RunInstances"),
    (r"rhel|red ?hat", "Red Hat Enterprise Linux Server", "7.4", "Red Hat Enterprise Linux", "RunInstances:0010"),
    (r"suse|sles", "SLES", "12.3", "SUSE Linux", "RunInstances:000g"),
    (r"ubuntu", "Ubuntu", "", "Linux/UNIX", "RunInstances"),
)

# Windows Server release in the AMI name -> SSM PlatformVersion (kernel build).
_WINDOWS_VERSIONS = (
    ("2022", "10.0.20348"),
    ("2019", "10.0.17763"),
    ("2016", "10.0.14393"),
    ("2012-R2", "6.3.9600"),
    ("2012", "6.2.9200"),
    ("2008-R2", "6.1.7601"),
    ("2008", "6.0.6002"),
    ("2003", "5.2.3790"),
)

# SQL Server licence in a Windows AMI name -> (PlatformDetails, UsageOperation).
_WINDOWS_SQL = (
    ("SQL_20\\d\\d(_SP\\d)?_Enterprise", "Windows with SQL Server Enterprise", "RunInstances:0102"),
    ("SQL_20\\d\\d(_SP\\d)?_Standard", "Windows with SQL Server Standard", "RunInstances:0006"),
    ("SQL_20\\d\\d(_SP\\d)?_Web", "Windows with SQL Server Web", "RunInstances:0202"),
)


@functools.lru_cache(maxsize=1024)
def os_info(platform: str | None, image_name: str | None) -> OsInfo:
    """OS facts for an AMI with moto's ``platform`` value and this ``image_name``."""
    name = image_name or ""
    if (platform or "").lower() == WINDOWS:
        version = next((build for release, build in _WINDOWS_VERSIONS if f"Server-{release}-" in name or f"Server-{release}_" in name), "10.0.17763")
        release = next((release for release, build in _WINDOWS_VERSIONS if build == version), "2019").replace("-", " ")
        details, usage = next(((d, u) for pattern, d, u in _WINDOWS_SQL if re.search(pattern, name)), ("Windows", "RunInstances:0002"))
        return OsInfo(WINDOWS, details, usage, "Windows", f"Microsoft Windows Server {release} Datacenter", version)
    for pattern, ssm_name, version, details, usage in _LINUX_FAMILIES:
        if re.search(pattern, name, re.IGNORECASE):
            if ssm_name == "Ubuntu":
                found = re.search(r"(\d\d\.\d\d)", name)
                version = found.group(1) if found else "22.04"
            return OsInfo(None, details, usage, "Linux", ssm_name, version)
    return OsInfo(None, "Linux/UNIX", "RunInstances", "Linux", "Amazon Linux", "2")


def instance_os(instance: Any) -> OsInfo:
    """OS facts for a moto Instance, from the AMI it was launched from (if moto still knows it)."""
    image = instance.ec2_backend.amis.get(instance.image_id)
    return os_info(instance.platform, image.name if image is not None else None)


def normalise_ami_platform(image: Any) -> None:
    """AWS sets an AMI's Platform only to ``windows``; moto's catalogue also says ``Linux/UNIX``."""
    if (image.platform or "").lower() != WINDOWS:
        image.platform = None
    else:
        image.platform = WINDOWS
