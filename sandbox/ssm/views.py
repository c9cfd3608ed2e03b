"""Run Command records rendered as the response structures of ListCommands, ListCommandInvocations and GetCommandInvocation."""

from __future__ import annotations

from typing import Any

from sandbox.clock import to_datetime, to_iso
from sandbox.errors import ssm_error
from sandbox.ssm import patch_logs, schedule
from sandbox.ssm.commands import CommandRecord, PlannedInvocation
from sandbox.ssm.documents import Step
from sandbox.ssm.outputs import STDERR_LIMIT, STDOUT_LIMIT, Streams, patch_streams, script_streams, skipped_step

# A plugin reports no "Delayed": until delivered it is Pending.
_PLUGIN_STATUS = {"Delayed": "Pending"}


def command_view(command: CommandRecord, timelines: list[schedule.Timeline], now: float) -> dict[str, Any]:
    status, details = schedule.command_status(timelines, now, command.max_errors, bool(command.cancellations))
    view = {
        "CommandId": command.command_id,
        "DocumentName": command.document.name,
        "DocumentVersion": command.document.version,
        "ExpiresAfter": to_datetime(command.expires_at),
        "RequestedDateTime": to_datetime(command.requested_at),
        "Status": status,
        "StatusDetails": details,
        "MaxConcurrency": command.max_concurrency,
        "MaxErrors": command.max_errors,
        "TimeoutSeconds": command.timeout_seconds,
        **command.request,
        **schedule.counts(timelines, now),
    }
    return view


def _running_step(command: CommandRecord, planned: PlannedInvocation) -> Step | None:
    """The step that runs on this instance: the one whose platform precondition matches (or the only one)."""
    steps = command.steps
    return next((step for step in steps if step.platform in (None, planned.platform_type)), None)


def _streams(command: CommandRecord, planned: PlannedInvocation, timeline: schedule.Timeline) -> Streams:
    if timeline.executed_from is None:
        return Streams("")
    if planned.patch_run is not None and command.settings.realistic_output:
        return patch_logs.patch_output(planned.patch_run, planned.platform_type, planned.target.instance_id, command.region,
                                       timeline.executed_from, timeline.ended)
    if planned.patch_run is not None:
        return patch_streams(planned.patch_run, planned.platform_type, planned.target.instance_id, command.region, timeline.executed_from, timeline.ended)
    return script_streams(timeline.final.details == "Success")


def plugins(command: CommandRecord, planned: PlannedInvocation, timeline: schedule.Timeline, now: float) -> list[dict[str, Any]]:
    """CommandPlugins of one invocation, in document order; steps for other platforms report a skipped Success."""
    phase = timeline.at(now)
    running = _running_step(command, planned)
    finished = phase.status in schedule.TERMINAL
    started = timeline.executed_from is not None and timeline.executed_from <= now
    result = []
    for step in command.steps:
        plugin: dict[str, Any] = {
            "Name": step.name,
            "OutputS3BucketName": command.request["OutputS3BucketName"],
            "OutputS3KeyPrefix": command.request["OutputS3KeyPrefix"],
            "OutputS3Region": command.request["OutputS3Region"] or command.region,
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
            "ResponseCode": -1,
            "Output": "",
        }
        if started:
            plugin["ResponseStartDateTime"] = to_datetime(timeline.executed_from)
        if step != running and started:
            plugin.update(Status="Success", StatusDetails="Success", ResponseCode=0, Output=skipped_step(step.name, step.platform).plugin_output(),
                          ResponseFinishDateTime=to_datetime(timeline.executed_from))
        elif finished:
            plugin.update(Status=phase.status, StatusDetails=phase.details, ResponseFinishDateTime=to_datetime(timeline.ended))
            if step == running:
                plugin.update(ResponseCode=timeline.response_code, Output=_streams(command, planned, timeline).plugin_output())
        else:
            plugin.update(Status=_PLUGIN_STATUS.get(phase.status, phase.status), StatusDetails=_PLUGIN_STATUS.get(phase.details, phase.details))
        result.append(plugin)
    return result


def invocation_view(command: CommandRecord, planned: PlannedInvocation, timeline: schedule.Timeline, now: float, details: bool) -> dict[str, Any]:
    phase = timeline.at(now)
    view: dict[str, Any] = {
        "CommandId": command.command_id,
        "InstanceId": planned.target.instance_id,
        "InstanceName": planned.instance_name,
        "Comment": command.request["Comment"],
        "DocumentName": command.document.name,
        "DocumentVersion": command.document.version,
        "RequestedDateTime": to_datetime(command.requested_at),
        "Status": phase.status,
        "StatusDetails": phase.details,
        "TraceOutput": "",
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "CommandPlugins": plugins(command, planned, timeline, now) if details else [],
        "ServiceRole": command.request["ServiceRole"],
        "NotificationConfig": command.request["NotificationConfig"],
        "CloudWatchOutputConfig": command.request["CloudWatchOutputConfig"],
    }
    return view


def get_invocation_view(command: CommandRecord, planned: PlannedInvocation, timeline: schedule.Timeline, now: float,
                        plugin_name: str | None) -> dict[str, Any]:
    """GetCommandInvocation: one plugin's result, or for a multi-step document without PluginName the invocation's status only."""
    phase = timeline.at(now)
    steps = command.steps
    if plugin_name is not None:
        step = next((candidate for candidate in steps if candidate.name == plugin_name), None)
        if step is None:
            raise ssm_error("InvalidPluginName", f"The plugin name {plugin_name} is not valid for document {command.document.name}.")
    else:
        step = steps[0] if len(steps) == 1 else None

    view: dict[str, Any] = {
        "CommandId": command.command_id,
        "InstanceId": planned.target.instance_id,
        "Comment": command.request["Comment"],
        "DocumentName": command.document.name,
        "DocumentVersion": command.document.version,
        "ResponseCode": -1,
        "ExecutionStartDateTime": "",
        "ExecutionElapsedTime": "",
        "ExecutionEndDateTime": "",
        "Status": phase.status,
        "StatusDetails": phase.details,
        "StandardOutputContent": "",
        "StandardOutputUrl": "",
        "StandardErrorContent": "",
        "StandardErrorUrl": "",
        "CloudWatchOutputConfig": command.request["CloudWatchOutputConfig"],
    }
    if step is not None:
        plugin = next(item for item in plugins(command, planned, timeline, now) if item["Name"] == step.name)
        view.update(PluginName=step.name, ResponseCode=plugin["ResponseCode"])
        if step != _running_step(command, planned):
            view.update(Status=plugin["Status"], StatusDetails=plugin["StatusDetails"], StandardOutputContent=plugin["Output"])
        elif phase.status in schedule.TERMINAL:
            streams = _streams(command, planned, timeline)
            view.update(StandardOutputContent=streams.stdout[:STDOUT_LIMIT], StandardErrorContent=streams.stderr[:STDERR_LIMIT])
    elif phase.status in schedule.TERMINAL:
        view["ResponseCode"] = timeline.response_code
    if timeline.executed_from is not None and timeline.executed_from <= now:
        view["ExecutionStartDateTime"] = to_iso(timeline.executed_from)
        end = timeline.ended if phase.status in schedule.TERMINAL else now
        view["ExecutionElapsedTime"] = f"PT{max(0.0, end - timeline.executed_from):.3f}S"
        if phase.status in schedule.TERMINAL:
            view["ExecutionEndDateTime"] = to_iso(timeline.ended)
    return view
