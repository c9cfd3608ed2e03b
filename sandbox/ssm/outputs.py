"""What an invocation prints, in the shape the SSM agent reports it.

Plugin ``Output`` is stdout, then ``----------ERROR-------`` and stderr when
there is any, cut to 2,500 characters (ListCommandInvocations' limit) with the
agent's truncation marker; GetCommandInvocation returns up to 24,000 / 8,000
characters of stdout / stderr.
"""

from __future__ import annotations

import dataclasses

from sandbox.clock import to_datetime
from sandbox.ssm.patching import INSTALL, PatchRun

PLUGIN_OUTPUT_LIMIT = 2500
STDOUT_LIMIT = 24000
STDERR_LIMIT = 8000
_ERROR_SEPARATOR = "\n----------ERROR-------\n"
_TRUNCATED = "\n---Output truncated---"


@dataclasses.dataclass(frozen=True)
class Streams:
    stdout: str
    stderr: str = ""

    def plugin_output(self) -> str:
        combined = self.stdout + (_ERROR_SEPARATOR + self.stderr if self.stderr else "")
        if len(combined) <= PLUGIN_OUTPUT_LIMIT:
            return combined
        return combined[: PLUGIN_OUTPUT_LIMIT - len(_TRUNCATED)] + _TRUNCATED


def script_streams(succeeded: bool) -> Streams:
    if succeeded:
        return Streams("ok\n")
    return Streams("", "failed to run commands: exit status 1")


def skipped_step(step_name: str, platform: str | None) -> Streams:
    return Streams(f"Step execution skipped due to unsatisfied preconditions: '\"StringEquals\": [platformType, {platform}]'. Step name: {step_name}")


def _stamp(when: float) -> str:
    return to_datetime(when).strftime("%m/%d/%Y %H:%M:%S")


def patch_streams(run: PatchRun, platform_type: str, instance_id: str, region: str, start: float, end: float) -> Streams:
    """The summary AWS-RunPatchBaseline prints for ``run`` (Linux agent log lines, or the Windows summary table)."""
    if platform_type == "Windows":
        return _windows_streams(run, start, end)
    lines = [
        "/usr/bin/python3",
        "/usr/bin/python3 found.",
        f"{_stamp(start)} root [INFO]: Downloading payload from https://s3.{region}.amazonaws.com/aws-ssm-{region}/patchbaselineoperations/"
        "linux/payloads/patch-baseline-operations-1.221.tar.gz",
        f"{_stamp(start)} root [INFO]: Attempting to import entrance file os_selector",
        f"{_stamp(start)} root [INFO]: Instance Id: {instance_id}",
        f"{_stamp(start)} root [INFO]: Region: {region}",
        f"{_stamp(start)} root [INFO]: Patch Group: {run.patch_group}",
        f"{_stamp(start)} root [INFO]: Operation type: {run.operation}",
        f"{_stamp(start)} root [INFO]: Snapshot Id: {run.snapshot_id}",
        f"{_stamp(start)} root [INFO]: Reboot option: {run.reboot_option}",
        f"{_stamp(start)} root [INFO]: Baseline: {run.baseline_id}",
    ]
    for patch in run.missing_before:
        lines.append(f"{_stamp(start)} root [INFO]: Missing: {patch.title} ({patch.classification}, {patch.severity})")
    for patch in run.installed:
        lines.append(f"{_stamp(end)} root [INFO]: Installed: {patch.title}")
    stderr = ""
    if run.failed:
        names = " ".join(patch.title.split(".x86_64")[0] for patch in run.failed)
        lines.append(f"{_stamp(end)} root [ERROR]: Error code returned from yum: 1")
        stderr = (
            f"{_stamp(end)} root [ERROR]: Transaction check error: package update failed for {names}\n"
            f"{_stamp(end)} root [ERROR]: Install failed for {len(run.failed)} package(s); see /var/log/amazon/ssm/patch-baseline-operations\n"
            "failed to run commands: exit status 1"
        )
    lines.append(f"{_stamp(end)} root [INFO]: Report upload successful.")
    if run.reboots:
        lines.append(f"{_stamp(end)} root [INFO]: Reboot is required; rebooting the instance.")
    elif run.operation == INSTALL and run.installed and run.reboot_option == "NoReboot":
        lines.append(f"{_stamp(end)} root [INFO]: RebootOption is NoReboot: reboot is pending.")
    return Streams("\n".join(lines) + "\n", stderr)


def _windows_streams(run: PatchRun, start: float, end: float) -> Streams:
    rows = [
        ("PatchGroup", run.patch_group),
        ("BaselineId", run.baseline_id),
        ("SnapshotId", run.snapshot_id),
        ("OwnerInformation", ""),
        ("OperationType", run.operation),
        ("OperationStartTime", to_datetime(start).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")),
        ("OperationEndTime", to_datetime(end).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")),
        ("InstalledCount", str(len(run.installed))),
        ("InstalledRejectedCount", "0"),
        ("InstalledPendingRebootCount", str(len(run.installed) if run.reboot_option == "NoReboot" else 0)),
        ("FailedCount", str(len(run.failed))),
        ("MissingCount", str(0 if run.operation == INSTALL else len(run.missing_before))),
    ]
    width = max(len(name) for name, _value in rows)
    text = f"Patch Summary for {run.patch_group}\n" + "\n".join(f"{name.ljust(width)} : {value}" for name, value in rows) + "\n"
    if run.reboots:
        # The agent reboots Windows when an installed update asks for it (exit code 3010) and resumes afterwards.
        text += "Updates require a reboot (exit code 3010): rebooting the instance.\n"
    stderr = ""
    if run.failed:
        stderr = "\n".join(f"Failed to install {patch.kb_id}: Installation failure: Windows failed to install the following update with error "
                           "0x80240022." for patch in run.failed)
    return Streams(text, stderr)
