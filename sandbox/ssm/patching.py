"""What AWS-RunPatchBaseline does to an instance's patch compliance.

A ``PatchRun`` is decided when SendCommand is called, from the instance's
patch state at that moment and its faults. The patch state at any time is a
fold of the runs that had *finished* by then (see ``fold``), so
DescribeInstancePatchStates changes exactly when an invocation completes.

- Scan reports what is missing and installs nothing.
- Install installs every missing patch. With RebootOption RebootIfNeeded the
  instance reboots when anything was installed or a reboot was pending; with
  NoReboot the installed patches stay InstalledPendingReboot.
- ``patch_fail``: about half the missing patches (at least one) fail to
  install, the rest install; the invocation ends Failed with exit code 1.
"""

from __future__ import annotations

import dataclasses

from sandbox.clock import to_datetime
from sandbox.ssm.patch_catalog import Patch, PatchProfile

INSTALL = "Install"
SCAN = "Scan"
NO_REBOOT = "NoReboot"
_PLACEHOLDER_FAILURE = Patch("kernel.x86_64:0:5.10.228-219.884.amzn2", "kernel.x86_64:0:5.10.228-219.884.amzn2", "Security", "Critical")


@dataclasses.dataclass(frozen=True)
class PatchRun:
    """One AWS-RunPatchBaseline execution on one instance, decided at SendCommand time."""

    operation: str
    reboot_option: str
    snapshot_id: str
    install_override_list: str
    baseline_id: str
    patch_group: str
    missing_before: tuple[Patch, ...]
    installed: tuple[Patch, ...]
    failed: tuple[Patch, ...]
    reboots: bool

    @property
    def succeeded(self) -> bool:
        return not self.failed


@dataclasses.dataclass(frozen=True)
class PatchState:
    """An instance's compliance after the runs folded so far (``last_*`` describe the latest one)."""

    profile: PatchProfile
    installed: tuple[tuple[Patch, float], ...] = ()
    pending_reboot: tuple[tuple[Patch, float], ...] = ()
    missing: tuple[Patch, ...] | None = None  # None: no scan yet, the profile's list applies
    failed: tuple[Patch, ...] = ()
    last_run: PatchRun | None = None
    last_start: float = 0.0
    last_end: float = 0.0
    last_no_reboot_install: float | None = None

    @property
    def current_missing(self) -> tuple[Patch, ...]:
        return self.profile.missing if self.missing is None else self.missing


def plan(state: PatchState, operation: str, reboot_option: str, snapshot_id: str, install_override_list: str, baseline_id: str,
         patch_group: str, fail: bool) -> PatchRun:
    """The run AWS-RunPatchBaseline would make now on an instance in ``state``."""
    missing = state.current_missing + state.failed
    installed: tuple[Patch, ...] = ()
    failed: tuple[Patch, ...] = ()
    if operation == INSTALL:
        if fail:
            failing = max(1, (len(missing) + 1) // 2)
            failed = missing[:failing] or (_PLACEHOLDER_FAILURE,)
            installed = missing[failing:]
        else:
            installed = missing
    reboots = operation == INSTALL and reboot_option != NO_REBOOT and not failed and bool(installed or state.pending_reboot)
    return PatchRun(operation, reboot_option, snapshot_id, install_override_list, baseline_id, patch_group, missing, installed, failed, reboots)


def fold(state: PatchState, run: PatchRun, start: float, end: float) -> PatchState:
    """The state after ``run`` finished at ``end``."""
    if run.operation == SCAN:
        return dataclasses.replace(state, missing=tuple(p for p in run.missing_before if p not in state.failed), last_run=run,
                                   last_start=start, last_end=end)
    newly = tuple((patch, end) for patch in run.installed)
    pending = state.pending_reboot + newly
    installed = state.installed
    no_reboot_at = state.last_no_reboot_install
    if run.reboot_option == NO_REBOOT:
        no_reboot_at = end if newly else no_reboot_at
    elif run.reboots:
        installed, pending = installed + pending, ()
    return dataclasses.replace(state, installed=installed, pending_reboot=pending, missing=(), failed=run.failed, last_run=run,
                               last_start=start, last_end=end, last_no_reboot_install=no_reboot_at)


def counts(state: PatchState) -> dict[str, int]:
    """The count fields of DescribeInstancePatchStates for ``state``."""
    noncompliant = state.current_missing + state.failed + tuple(patch for patch, _installed_at in state.pending_reboot)
    critical = sum(1 for patch in noncompliant if patch.severity == "Critical")
    security = sum(1 for patch in noncompliant if patch.classification in ("Security", "SecurityUpdates"))
    return {
        "InstalledCount": len(state.profile.installed) + len(state.installed),
        "InstalledOtherCount": state.profile.installed_other,
        "InstalledPendingRebootCount": len(state.pending_reboot),
        "InstalledRejectedCount": 0,
        "MissingCount": len(state.current_missing),
        "FailedCount": len(state.failed),
        "UnreportedNotApplicableCount": state.profile.unreported_not_applicable,
        "NotApplicableCount": state.profile.not_applicable,
        "CriticalNonCompliantCount": critical,
        "SecurityNonCompliantCount": security,
        "OtherNonCompliantCount": len(noncompliant) - security,
    }


def patches(state: PatchState, baseline_installed_at: float) -> list[dict[str, object]]:
    """DescribeInstancePatches rows: every patch the baseline knows about for this instance (Missing/Failed: installed at epoch 0, as AWS)."""
    rows: list[dict[str, object]] = []

    def row(patch: Patch, compliance: str, installed_at: float) -> None:
        item: dict[str, object] = {"Title": patch.title, "KBId": patch.kb_id, "Classification": patch.classification,
                                   "Severity": patch.severity, "State": compliance, "InstalledTime": to_datetime(installed_at)}
        if patch.cve_ids and compliance in ("Missing", "Failed"):
            item["CVEIds"] = ",".join(patch.cve_ids)
        rows.append(item)

    for patch in state.profile.installed:
        row(patch, "Installed", baseline_installed_at)
    for patch, when in state.installed:
        row(patch, "Installed", when)
    for patch, when in state.pending_reboot:
        row(patch, "InstalledPendingReboot", when)
    for patch in state.current_missing:
        row(patch, "Missing", 0.0)
    for patch in state.failed:
        row(patch, "Failed", 0.0)
    return rows
