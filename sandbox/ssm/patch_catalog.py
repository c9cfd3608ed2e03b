"""Each instance's patch situation, derived from a stable hash of its id so tests can predict it.

``profile(instance_id, platform_type)`` says which patches the default baseline
finds missing before anything is installed (0-8 of them), how many are
installed already, and the counts AWS reports but the sandbox never changes
(InstalledOther, NotApplicable, UnreportedNotApplicable).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

MAX_MISSING = 8


@dataclasses.dataclass(frozen=True)
class Patch:
    title: str
    kb_id: str
    classification: str
    severity: str
    cve_ids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PatchProfile:
    missing: tuple[Patch, ...]
    installed: tuple[Patch, ...]
    installed_other: int
    not_applicable: int
    unreported_not_applicable: int


def _linux(package: str, version: str, classification: str, severity: str, cve: str = "") -> Patch:
    name = f"{package}.x86_64:0:{version}"
    return Patch(name, name, classification, severity, (cve,) if cve else ())


def _windows(kb: str, title: str, classification: str, severity: str, cve: str = "") -> Patch:
    return Patch(f"{title} ({kb})", kb, classification, severity, (cve,) if cve else ())


_LINUX_UPDATES = (
    _linux("kernel", "5.10.228-219.884.amzn2", "Security", "Critical", "CVE-2024-26925"),
    _linux("openssl-libs", "1.0.2k-24.amzn2.0.14", "Security", "Important", "CVE-2024-5535"),
    _linux("glibc", "2.26-64.amzn2.0.3", "Security", "Important", "CVE-2024-33599"),
    _linux("curl", "8.3.0-1.amzn2.0.7", "Security", "Medium", "CVE-2024-2398"),
    _linux("sudo", "1.8.23-10.amzn2.3.4", "Security", "Important", "CVE-2023-22809"),
    _linux("bind-libs", "9.11.4-26.P2.amzn2.13.5", "Security", "Important", "CVE-2024-1737"),
    _linux("python3", "3.7.16-1.amzn2.0.8", "Security", "Medium", "CVE-2024-6232"),
    _linux("systemd", "219-78.amzn2.0.22", "Bugfix", "Medium"),
    _linux("nss", "3.90.0-2.amzn2.0.2", "Security", "Medium", "CVE-2023-5388"),
    _linux("ca-certificates", "2023.2.64-1.amzn2.0.1", "Enhancement", "Low"),
    _linux("tzdata", "2024a-1.amzn2.0.1", "Bugfix", "Low"),
    _linux("libxml2", "2.9.1-6.amzn2.5.13", "Security", "Medium", "CVE-2024-25062"),
)

_WINDOWS_UPDATES = (
    _windows("KB5044277", "2024-10 Cumulative Update for Windows Server 2019 for x64-based Systems", "SecurityUpdates", "Critical", "CVE-2024-43572"),
    _windows("KB5043126", "2024-09 Servicing Stack Update for Windows Server 2019 for x64-based Systems", "SecurityUpdates", "Critical"),
    _windows("KB5044033", "2024-10 Cumulative Update for .NET Framework 3.5, 4.7.2 and 4.8", "SecurityUpdates", "Important", "CVE-2024-43483"),
    _windows("KB890830", "Windows Malicious Software Removal Tool x64 - v5.129", "UpdateRollups", "Unspecified"),
    _windows("KB5001716", "Update for Windows Server 2019 for x64-based Systems", "Updates", "Unspecified"),
    _windows("KB5045592", "2024-10 Security Update for Microsoft Defender Antivirus", "SecurityUpdates", "Important", "CVE-2024-20671"),
    _windows("KB5042881", "2024-09 Cumulative Update for .NET Framework 4.8", "SecurityUpdates", "Important", "CVE-2024-38081"),
    _windows("KB5041578", "2024-08 Cumulative Update for Windows Server 2019 for x64-based Systems", "SecurityUpdates", "Critical", "CVE-2024-38063"),
    _windows("KB5040430", "2024-07 Cumulative Update for Windows Server 2019 for x64-based Systems", "CriticalUpdates", "Critical"),
    _windows("KB5039705", "2024-06 Servicing Stack Update for Windows Server 2019", "SecurityUpdates", "Moderate"),
    _windows("KB4589208", "Update for Windows Server 2019 Intel microcode", "Updates", "Unspecified"),
    _windows("KB5037765", "2024-05 Cumulative Update for Windows Server 2019 for x64-based Systems", "SecurityUpdates", "Critical", "CVE-2024-30051"),
)

_LINUX_BASE_PACKAGES = (
    "acl", "audit", "bash", "binutils", "bzip2-libs", "chrony", "cloud-init", "coreutils", "cpio", "cronie", "cyrus-sasl-lib", "dbus",
    "device-mapper", "dhclient", "diffutils", "e2fsprogs", "ec2-utils", "elfutils-libs", "file", "findutils", "gawk", "gdbm", "gmp", "gnupg2",
    "grep", "grub2", "gzip", "hostname", "iproute", "iptables", "kmod", "krb5-libs", "less", "libcap", "libcurl", "libgcc", "libselinux",
    "libstdc++", "libuuid", "lua", "lz4", "ncurses", "openssh", "pam", "pcre", "procps-ng", "rpm", "rsyslog", "sed", "shadow-utils", "sqlite",
    "tar", "util-linux", "vim-minimal", "wget", "which", "xz", "yum", "zlib",
)


def _digest(instance_id: str) -> bytes:
    return hashlib.sha256(instance_id.encode()).digest()


def missing_count(instance_id: str) -> int:
    """How many patches the instance misses before the sandbox installs anything (0-8)."""
    return _digest(instance_id)[0] % (MAX_MISSING + 1)


@functools.lru_cache(maxsize=4096)
def profile(instance_id: str, platform_type: str) -> PatchProfile:
    digest = _digest(instance_id)
    updates = _WINDOWS_UPDATES if platform_type == "Windows" else _LINUX_UPDATES
    start = digest[5] % len(updates)
    missing = tuple(updates[(start + offset) % len(updates)] for offset in range(missing_count(instance_id)))
    if platform_type == "Windows":
        installed = tuple(
            _windows(f"KB{4480000 + 977 * index + digest[6]}", "Update for Windows Server 2019 for x64-based Systems", "Updates", "Unspecified")
            for index in range(10 + digest[1] % 20)
        )
        unreported = digest[4] % 10
    else:
        installed = tuple(
            _linux(package, f"{1 + index % 5}.{digest[6] % 10}.{index}-1.amzn2", "Bugfix", "Low")
            for index, package in enumerate(_LINUX_BASE_PACKAGES[: 20 + digest[1] % 40])
        )
        unreported = 0
    return PatchProfile(missing, installed, digest[2] % 5, 100 + digest[3] % 200, unreported)
