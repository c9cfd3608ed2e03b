"""Sent commands, per (account, region), and what they have done by now.

A ``CommandRecord`` keeps everything SendCommand decided (targets in order,
each target's outcome, the settings in force) plus the CancelCommand calls.
Its invocation timelines are simulated on demand and cached until agent
availability history or the cancellations change.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any

from sandbox.clock import Clock, Settings, to_iso
from sandbox.faults import FaultStore
from sandbox.ssm import patching, schedule
from sandbox.ssm.documents import ResolvedDocument, Step
from sandbox.ssm.patching import PatchRun, PatchState
from sandbox.ssm.patch_catalog import profile


@dataclasses.dataclass(frozen=True)
class PlannedInvocation:
    target: schedule.Target
    instance_name: str
    platform_type: str
    patch_run: PatchRun | None  # only for AWS-RunPatchBaseline


@dataclasses.dataclass
class CommandRecord:
    command_id: str
    account: str
    region: str
    document: ResolvedDocument
    request: dict[str, Any]  # the SendCommand fields echoed back (Comment, Parameters, InstanceIds, Targets, Output*, ...)
    requested_at: float
    timeout_seconds: int
    max_concurrency: str
    max_errors: str
    settings: Settings
    invocations: list[PlannedInvocation]
    # The document's execution timeout (seconds), resolved from the step inputs and parameters at SendCommand.
    execution_timeout: float = 0.0
    cancellations: list[tuple[float, frozenset[str] | None]] = dataclasses.field(default_factory=list)
    _cache: tuple[Any, list[schedule.Timeline]] | None = None

    @property
    def steps(self) -> list[Step]:
        return self.document.steps

    @property
    def expires_at(self) -> float:
        """ExpiresAfter: send time + TimeoutSeconds, + the execution timeout when commands wait for expiry as on AWS."""
        extra = self.execution_timeout if self.settings.delayed_until_expiry else 0.0
        return self.requested_at + self.timeout_seconds + extra

    def instance_ids(self) -> list[str]:
        return [planned.target.instance_id for planned in self.invocations]

    def cancelled_at(self, instance_id: str) -> float:
        times = [when for when, ids in self.cancellations if ids is None or instance_id in ids]
        return min(times) if times else math.inf

    def timelines(self, faults: FaultStore) -> list[schedule.Timeline]:
        key = (faults.agent_history_version, len(self.cancellations))
        if self._cache is None or self._cache[0] != key:
            timelines = schedule.simulate(
                [planned.target for planned in self.invocations],
                self.requested_at,
                self.timeout_seconds,
                self.max_concurrency,
                self.max_errors,
                self.settings,
                faults.agent_offline_at,
                self.cancelled_at,
                expires_at=self.expires_at if self.settings.delayed_until_expiry else None,
                agent_online_from=faults.agent_online_from,
            )
            self._cache = (key, timelines)
        return self._cache[1]


class CommandStore:
    def __init__(self, clock: Clock, faults: FaultStore) -> None:
        self._clock = clock
        self._faults = faults
        self._lock = threading.RLock()
        self._commands: dict[tuple[str, str], list[CommandRecord]] = {}
        # instance id -> (command, invocation index) of every AWS-RunPatchBaseline invocation on it, in send order.
        self._patch_runs: dict[str, list[tuple[CommandRecord, int]]] = {}
        # instance id -> [(when its root volume was restored, the moment the restored snapshot was taken)] (sandbox/ec2/rollback.py).
        self._restores: dict[str, list[tuple[float, float]]] = {}

    def add(self, command: CommandRecord) -> None:
        with self._lock:
            self._commands.setdefault((command.account, command.region), []).append(command)
            for index, planned in enumerate(command.invocations):
                if planned.patch_run is not None:
                    self._patch_runs.setdefault(planned.target.instance_id, []).append((command, index))

    def in_region(self, account: str, region: str) -> list[CommandRecord]:
        """Commands of one account and region, newest first (the order ListCommands uses)."""
        with self._lock:
            return list(reversed(self._commands.get((account, region), [])))

    def get(self, account: str, region: str, command_id: str) -> CommandRecord | None:
        with self._lock:
            return next((command for command in self._commands.get((account, region), []) if command.command_id == command_id), None)

    def all(self) -> list[CommandRecord]:
        with self._lock:
            return [command for commands in self._commands.values() for command in commands]

    def cancel(self, command: CommandRecord, instance_ids: list[str] | None) -> None:
        with self._lock:
            command.cancellations.append((self._clock.now(), frozenset(instance_ids) if instance_ids else None))

    def timelines(self, command: CommandRecord) -> list[schedule.Timeline]:
        with self._lock:
            return command.timelines(self._faults)

    def patch_history(self, account: str, region: str, instance_id: str, when: float, reported: bool = False) -> list[tuple[PatchRun, float, float, str]]:
        """(run, start, end, command id) of every AWS-RunPatchBaseline run on the instance that had finished by ``when``.

        ``reported``: only the runs whose compliance the agent had reported by then (``compliance_delay_seconds``
        after the end, with the settings the command was sent with), as DescribeInstancePatchStates shows them.
        """
        history = []
        with self._lock:
            for command, index in self._patch_runs.get(instance_id, []):
                if (command.account, command.region) != (account, region):
                    continue
                planned, timeline = command.invocations[index], command.timelines(self._faults)[index]
                delay = command.settings.compliance_delay_seconds if reported else 0.0
                if timeline.ran_to_completion() and timeline.completed_by(when - delay) and timeline.final.details != "ExecutionTimedOut":
                    history.append((planned.patch_run, timeline.executed_from or timeline.ended, timeline.ended, command.command_id))
        history.sort(key=lambda item: item[2])
        restores = self._restores.get(instance_id)
        if restores and history:
            # What the machine holds: after a restore, the runs that ended between the snapshot and the restore are gone.
            # What SSM reports is what the agent uploaded last, from the machine as it was then (a restore alone changes no report).
            history = _effective(history, restores, history[-1][2] if reported else when)
        return history

    def restore(self, instance_id: str, at: float, as_of: float) -> None:
        """The instance's root volume is replaced at ``at`` by one restored from a snapshot taken at ``as_of``."""
        with self._lock:
            self._restores.setdefault(instance_id, []).append((at, as_of))
            self._restores[instance_id].sort()

    def patch_state(self, account: str, region: str, instance_id: str, platform_type: str, when: float, reported: bool = False) -> PatchState:
        """The instance's patch state at ``when``: what is really installed, or (``reported``) what SSM reports so far."""
        state = PatchState(profile(instance_id, platform_type))
        for run, start, end, _command_id in self.patch_history(account, region, instance_id, when, reported):
            state = patching.fold(state, run, start, end)
        return state

    def reboots(self, when: float) -> list[dict[str, Any]]:
        """Every reboot an AWS-RunPatchBaseline Install has caused so far."""
        found = []
        with self._lock:
            for command in self.all():
                for planned, timeline in zip(command.invocations, command.timelines(self._faults)):
                    if planned.patch_run and planned.patch_run.reboots and timeline.ran_to_completion() and timeline.completed_by(when):
                        rebooted_at = timeline.ended - schedule.reboot_duration(command.settings, planned.target.instance_id)
                        found.append({"instance_id": planned.target.instance_id, "command_id": command.command_id, "at": rebooted_at})
        return sorted(found, key=lambda item: item["at"])

    def command_log(self) -> list[dict[str, Any]]:
        """Every command SendCommand accepted, in send order (tests count patches per instance from it)."""
        with self._lock:
            commands = sorted(self.all(), key=lambda command: command.requested_at)
        return [{
            "command_id": command.command_id,
            "document": command.document.name,
            "instance_ids": command.instance_ids(),
            "comment": command.request["Comment"],
            "parameters": command.request["Parameters"],
            "requested_at": command.requested_at,
            "requested": to_iso(command.requested_at),
            "account": command.account,
            "region": command.region,
        } for command in commands]

    def peak_in_progress(self, when: float, comment_contains: str | None = None) -> dict[str, Any]:
        """The most invocations InProgress at one moment up to ``when``, over the commands whose Comment contains the text."""
        events: list[tuple[float, int]] = []
        with self._lock:
            selected = [command for command in self.all() if comment_contains is None or comment_contains in command.request["Comment"]]
            for command in selected:
                for timeline in command.timelines(self._faults):
                    for start, end in timeline.in_progress():
                        if start <= when:
                            # An end sorts before a start at the same moment: one invocation ending as another starts is not an overlap.
                            events += [(start, 1), (end, -1)]
        peak = running = 0
        peak_at = None
        for moment, change in sorted(events):
            running += change
            if running > peak:
                peak, peak_at = running, moment
        return {"peak": peak, "at": peak_at, "commands": len(selected), "comment_contains": comment_contains}

    def reset(self) -> None:
        with self._lock:
            self._commands.clear()
            self._patch_runs.clear()
            self._restores.clear()


def _effective(history: list[Any], restores: list[tuple[float, float]], when: float) -> list[Any]:
    """The runs (sorted by end) whose effect is on the machine at ``when``: the latest restore before it brings back the
    machine as it was at its snapshot's moment (itself the result of earlier restores), and the runs since add to that."""
    done = [restore for restore in restores if restore[0] <= when]
    if not done:
        return [item for item in history if item[2] <= when]
    at, as_of = done[-1]
    return _effective(history, restores, as_of) + [item for item in history if at < item[2] <= when]
