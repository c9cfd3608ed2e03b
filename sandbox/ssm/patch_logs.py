"""AWS-RunPatchBaseline output of realistic length (setting ``realistic_output``).

A real run prints the patch-baseline-operations log: payload download, the OS
detection, the baseline, a line per package / update it evaluated, yum's (or
Windows Update's) transaction, the summary. That is well over the 2,500
characters ListCommandInvocations keeps, so a client reading plugin Output sees
only its beginning (GetCommandInvocation returns up to 24,000).

Reboots: with RebootIfNeeded and something installed, the script exits 194
(Linux) / 3010 (Windows), the agent reboots the instance and runs the script
again; the invocation's final output is that second run's, which finds nothing
to install and says nothing about a reboot. Nothing can infer a reboot from it.
"""

from __future__ import annotations

import hashlib

from sandbox.clock import to_datetime
from sandbox.ssm.outputs import Streams
from sandbox.ssm.patch_catalog import Patch, profile
from sandbox.ssm.patching import INSTALL, NO_REBOOT, PatchRun


def _stamp(when: float) -> str:
    return to_datetime(when).strftime("%m/%d/%Y %H:%M:%S")


def _size_kib(patch: Patch) -> int:
    return 40 + hashlib.sha256(patch.kb_id.encode()).digest()[0] * 37


def _linux_package(patch: Patch) -> tuple[str, str]:
    name, _arch, rest = patch.title.partition(".x86_64:")
    return name, rest.partition(":")[2] or rest


def patch_output(run: PatchRun, platform_type: str, instance_id: str, region: str, start: float, end: float) -> Streams:
    """The final output of the invocation: the re-run's when the run rebooted the instance."""
    rerun = run.reboots
    if platform_type == "Windows":
        return _windows(run, instance_id, region, start, end, rerun)
    return _linux(run, instance_id, region, start, end, rerun)


def _linux(run: PatchRun, instance_id: str, region: str, start: float, end: float, rerun: bool) -> Streams:
    at = _stamp(end if rerun else start)
    done = _stamp(end)
    baseline = profile(instance_id, "Linux")
    lines = [
        "/usr/bin/python3",
        "/usr/bin/python2.7",
        "/usr/bin/yum",
        "Using Yum version: 3.4.3",
        "Using python binary: 'python2.7'",
        "Using Python Version: Python 2.7.18",
        f"{at} root [INFO]: Downloading payload from https://s3.dualstack.{region}.amazonaws.com/aws-ssm-{region}/patchbaselineoperations/linux/"
        "payloads/patch-baseline-operations-1.221.tar.gz",
        f"{at} root [INFO]: Attempting to import entrance file os_selector",
        f"{at} root [INFO]: Attempting to import entrance file patch_baseline_operations",
        f"{at} root [INFO]: Instance Id: {instance_id}",
        f"{at} root [INFO]: Region: {region}",
        f"{at} root [INFO]: Patch Group: {run.patch_group}",
        f"{at} root [INFO]: Operation type: {run.operation}",
        f"{at} root [INFO]: Snapshot Id: {run.snapshot_id}",
        f"{at} root [INFO]: Reboot option: {run.reboot_option}",
        f"{at} root [INFO]: Baseline: {run.baseline_id}",
        f"{at} yum_base [INFO]: Loaded plugins: extras_suggestions, langpacks, priorities, update-motd",
        f"{at} yum_base [INFO]: Setting up repositories: amzn2-core, amzn2extra-docker, amzn2extra-kernel-5.10",
        f"{at} yum_base [INFO]: Repo metadata loaded: amzn2-core (updated {at}), 34 packages excluded due to repository priority protections",
        f"{at} root [INFO]: Evaluating {len(baseline.installed) + len(run.missing_before)} installed packages against the baseline rules",
    ]
    lines += [f"{at} package_compliance [INFO]: Installed, compliant: {patch.title}" for patch in baseline.installed]
    missing = () if rerun else run.missing_before
    lines += [f"{at} package_compliance [INFO]: Missing: {patch.title} ({patch.classification}, {patch.severity})" for patch in missing]
    if rerun:
        lines += [f"{at} package_compliance [INFO]: Installed, compliant: {patch.title}" for patch in run.installed]
    if run.operation == INSTALL and not rerun and (run.installed or run.failed):
        lines += _yum_transaction(run, start, end)
    elif run.operation == INSTALL:
        lines.append(f"{done} root [INFO]: No updates to install: the instance is compliant with the baseline.")
    stderr = ""
    if run.failed:
        names = " ".join(_linux_package(patch)[0] for patch in run.failed)
        lines.append(f"{done} root [ERROR]: Error code returned from yum: 1")
        stderr = (f"{done} root [ERROR]: Transaction check error: package update failed for {names}\n"
                  f"{done} root [ERROR]: Install failed for {len(run.failed)} package(s); see /var/log/amazon/ssm/patch-baseline-operations\n"
                  "failed to run commands: exit status 1")
    lines.append(f"{done} root [INFO]: Report upload successful.")
    if run.operation == INSTALL and run.installed and run.reboot_option == NO_REBOOT:
        lines.append(f"{done} root [INFO]: RebootOption is NoReboot: new packages are reported InstalledPendingReboot until the next boot.")
    return Streams("\n".join(lines) + "\n", stderr)


def _yum_transaction(run: PatchRun, start: float, end: float) -> list[str]:
    packages = [_linux_package(patch) + (_size_kib(patch),) for patch in run.installed]
    count = len(packages)
    lines = [f"{_stamp(start)} root [INFO]: Start Installation", f"{_stamp(start)} yum_base [INFO]: Installing {count} update(s)",
             "Resolving Dependencies", "--> Running transaction check"]
    lines += [f"---> Package {name}.x86_64 0:{version} will be an update" for name, version, _size in packages]
    lines += ["--> Finished Dependency Resolution", "", "Dependencies Resolved", "", "=" * 80,
              " Package              Arch        Version                          Repository      Size", "=" * 80, "Updating:"]
    lines += [f" {name:<20} x86_64      {version:<32} amzn2-core  {size:>6} k" for name, version, size in packages]
    lines += ["", "Transaction Summary", "=" * 80, f"Upgrade  {count} Packages", "", "Downloading packages:", "Running transaction check",
              "Running transaction test", "Transaction test succeeded", "Running transaction"]
    lines += [f"  Updating   : {name}-{version}.x86_64{index:>12}/{count}" for index, (name, version, _size) in enumerate(packages, 1)]
    lines += [f"  Verifying  : {name}-{version}.x86_64{index:>12}/{count}" for index, (name, version, _size) in enumerate(packages, 1)]
    lines += ["", "Updated:"] + [f"  {name}.x86_64 0:{version}" for name, version, _size in packages] + ["", "Complete!"]
    if not run.failed:
        lines.append(f"{_stamp(end)} root [INFO]: Installation Succeeded")
    return lines


def _windows(run: PatchRun, instance_id: str, region: str, start: float, end: float, rerun: bool) -> Streams:
    at = _stamp(end if rerun else start)
    done = _stamp(end)
    baseline = profile(instance_id, "Windows")
    installing = () if rerun else run.installed
    lines = [
        f"{at} Initializing patch baseline operations for {instance_id} in {region}",
        f"{at} Downloading PatchBaselineOperations module from https://s3.dualstack.{region}.amazonaws.com/aws-ssm-{region}/"
        "patchbaselineoperations/windows/AWSPatchBaselineOperations.zip",
        f"{at} Module loaded; Windows Update Agent version 10.0.17763.5830",
        f"{at} Loading baseline snapshot {run.snapshot_id or '(latest)'} from https://patch-baseline-snapshot-{region}.s3.{region}.amazonaws.com/"
        f"{hashlib.sha256(instance_id.encode()).hexdigest()}",
        f"{at} Windows Update service (wuauserv) is running; update source: Microsoft Update",
        f"{at} Working directory: C:\\ProgramData\\Amazon\\PatchBaselineOperations\\State\\{instance_id}",
        f"{at} Operation: {run.operation}, RebootOption: {run.reboot_option}, Baseline: {run.baseline_id}",
        f"{at} Searching for updates with criteria: IsInstalled=0 and Type='Software' or IsInstalled=1 and Type='Software'",
        f"{at} Found {len(baseline.installed) + len(run.missing_before)} updates matching the baseline approval rules",
    ]
    lines += [f"{at} Installed and approved: {patch.title} ({patch.kb_id})" for patch in baseline.installed]
    if rerun:
        lines += [f"{at} Installed and approved: {patch.title}" for patch in run.installed]
    else:
        lines += [f"{at} Missing and approved: {patch.title}" for patch in run.missing_before]
    for patch in installing:
        lines += [f"{at} Downloading {patch.kb_id} ({_size_kib(patch)} KB)", f"{done} Installing {patch.kb_id}: result code Succeeded"]
    if run.operation == INSTALL and not installing and not run.failed:
        lines.append(f"{done} No approved updates are missing: nothing to install.")
    lines += [f"{done} {baseline.not_applicable} updates not applicable to this instance, {baseline.installed_other} installed outside the baseline",
              f"{done} Uploading compliance report for {instance_id} to Systems Manager Inventory", f"{done} Compliance report uploaded."]
    rows = [
        ("PatchGroup", run.patch_group),
        ("BaselineId", run.baseline_id),
        ("SnapshotId", run.snapshot_id),
        ("OwnerInformation", ""),
        ("OperationType", run.operation),
        ("OperationStartTime", to_datetime(end if rerun else start).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")),
        ("OperationEndTime", to_datetime(end).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")),
        ("InstalledCount", str(len(installing))),
        ("InstalledRejectedCount", "0"),
        ("InstalledPendingRebootCount", str(len(run.installed) if run.reboot_option == NO_REBOOT else 0)),
        ("FailedCount", str(len(run.failed))),
        ("MissingCount", str(0 if run.operation == INSTALL else len(run.missing_before))),
    ]
    width = max(len(name) for name, _value in rows)
    text = "\n".join(lines) + f"\n\nPatch Summary for {run.patch_group}\n" + "\n".join(f"{name.ljust(width)} : {value}" for name, value in rows) + "\n"
    stderr = ""
    if run.failed:
        stderr = "\n".join(f"Failed to install {patch.kb_id}: Installation failure: Windows failed to install the following update with error "
                           "0x80240022." for patch in run.failed)
    return Streams(text, stderr)
