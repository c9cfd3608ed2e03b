"""When each invocation of a Run Command runs and how it ends, computed from the send time.

Nothing is executed; ``simulate`` lays the whole command out on the sandbox
time line the way Run Command paces it:

- targets are dispatched in order, at most ``MaxConcurrency`` at once; a
  dispatched invocation is Pending for ``command_delivery_seconds``, then
  InProgress for ``invocation_seconds`` (+ ``reboot_seconds`` if it reboots),
  each drawn per instance up to ``invocation_max_seconds`` / ``reboot_max_seconds``;
- an unreachable instance (agent offline at its turn, or not running at send
  time) is Delayed for ``undeliverable_seconds``, then Failed/Undeliverable;
  with ``delayed_until_expiry`` (``expires_at`` given) it stays Delayed until
  the command expires (TimedOut/DeliveryTimedOut), unless its agent comes back
  before: then it is delivered and runs; whatever has not ended at expiry
  ends DeliveryTimedOut (the Command.ExpiresAfter API reference);
- once more than ``MaxErrors`` invocations have failed (Failed or
  ExecutionTimedOut), invocations not yet dispatched end Cancelled/Terminated;
  running ones finish;
- nothing is dispatched after the delivery timeout (``TimeoutSeconds``):
  those end TimedOut/DeliveryTimedOut;
- CancelCommand cancels whatever has not ended by then.

Agent availability is the only input that can change after SendCommand; its
history is append-only, so re-simulating never changes the past.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
from collections.abc import Callable, Sequence

from sandbox.clock import Settings, drawn_seconds

TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled"}
_ERROR_DETAILS = {"Failed", "ExecutionTimedOut"}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How an invocation ends if it runs to completion (decided at SendCommand time)."""

    status: str  # Success | Failed | TimedOut
    details: str  # Success | Failed | ExecutionTimedOut | InvalidPlatform
    response_code: int
    reboots: bool = False
    # A health-check script (AWS-RunShellScript / AWS-RunPowerShellScript) runs for seconds, not a patch run's minutes.
    script: bool = False

    @property
    def is_error(self) -> bool:
        return self.details in _ERROR_DETAILS


@dataclasses.dataclass(frozen=True)
class Target:
    instance_id: str
    reachable_at_send: bool
    outcome: Outcome


@dataclasses.dataclass(frozen=True)
class Phase:
    at: float
    status: str
    details: str


@dataclasses.dataclass(frozen=True)
class Timeline:
    phases: tuple[Phase, ...]
    executed_from: float | None  # when the plugin started running (None: it never ran)
    response_code: int

    def at(self, when: float) -> Phase:
        current = self.phases[0]
        for phase in self.phases:
            if phase.at <= when:
                current = phase
        return current

    @property
    def final(self) -> Phase:
        return self.phases[-1]

    @property
    def ended(self) -> float:
        return self.phases[-1].at

    def in_progress(self) -> list[tuple[float, float]]:
        """The [start, end) intervals this invocation spends InProgress."""
        return [(phase.at, following.at) for phase, following in zip(self.phases, self.phases[1:]) if phase.status == "InProgress"]

    def completed_by(self, when: float) -> bool:
        return self.final.at <= when

    def ran_to_completion(self) -> bool:
        """The plugin ran and ended on its own (not cancelled, timed out or undelivered)."""
        return self.executed_from is not None and self.final.details in ("Success", "Failed", "ExecutionTimedOut")


def concurrency_limit(max_concurrency: str, targets: int) -> int:
    """``"10"`` or ``"25%"`` of the targets (at least one at a time)."""
    if max_concurrency.endswith("%"):
        return max(1, math.floor(targets * int(max_concurrency[:-1]) / 100))
    return max(1, int(max_concurrency))


def error_allowance(max_errors: str, targets: int) -> int:
    """How many errors are tolerated: the command stops dispatching at the one after that."""
    if max_errors.endswith("%"):
        return math.floor(targets * int(max_errors[:-1]) / 100)
    return int(max_errors)


def simulate(targets: Sequence[Target], requested_at: float, timeout_seconds: int, max_concurrency: str, max_errors: str, settings: Settings,
             agent_offline_at: Callable[[str, float], bool], cancelled_at: Callable[[str], float], expires_at: float | None = None,
             agent_online_from: Callable[[str, float], float] | None = None) -> list[Timeline]:
    """Lay out every invocation; ``cancelled_at(instance_id)`` is the earliest CancelCommand covering it (inf if none).

    ``expires_at`` (the command's ExpiresAfter) switches on AWS's Delayed-until-expiry behaviour;
    ``agent_online_from(instance_id, t)`` is when an offline agent is back (inf: not yet).
    """
    deadline = requested_at + timeout_seconds
    slots = [requested_at] * concurrency_limit(max_concurrency, len(targets))
    allowed = error_allowance(max_errors, len(targets))
    error_times: list[float] = []
    pending = Phase(requested_at, "Pending", "Pending")
    timelines: list[Timeline] = []

    for target in targets:
        slot = heapq.heappop(slots)
        dispatch = max(requested_at, slot)
        cancel = cancelled_at(target.instance_id)
        stopped = error_times[allowed] if len(error_times) > allowed else math.inf
        before_dispatch = min(
            (cancel, Phase(cancel, "Cancelled", "Cancelled")),
            (stopped, Phase(stopped, "Cancelled", "Terminated")),
            (deadline, Phase(deadline, "TimedOut", "DeliveryTimedOut")),
            key=lambda candidate: candidate[0],
        )
        if before_dispatch[0] <= dispatch:
            heapq.heappush(slots, slot)
            timelines.append(Timeline((pending, before_dispatch[1]), None, -1))
            continue

        if expires_at is not None and (not target.reachable_at_send or agent_offline_at(target.instance_id, dispatch)):
            back = agent_online_from(target.instance_id, dispatch) if agent_online_from and target.reachable_at_send else math.inf
            timeline = _delayed_until_expiry(pending, target, dispatch, back, expires_at, cancel, settings)
            if timeline.final.details in _ERROR_DETAILS:
                bisect.insort(error_times, timeline.ended)
        elif not target.reachable_at_send or agent_offline_at(target.instance_id, dispatch):
            timeline = _undeliverable(pending, dispatch, deadline, cancel, settings)
        else:
            timeline = _delivered(pending, target.outcome, dispatch, deadline, cancel, settings, target.instance_id)
            if timeline.final.details in _ERROR_DETAILS:
                bisect.insort(error_times, timeline.ended)
        heapq.heappush(slots, timeline.ended)
        timelines.append(timeline)
    return timelines


def _undeliverable(pending: Phase, dispatch: float, deadline: float, cancel: float, settings: Settings) -> Timeline:
    end = dispatch + settings.undeliverable_seconds
    final = Phase(end, "Failed", "Undeliverable")
    if end >= deadline:
        final = Phase(deadline, "TimedOut", "DeliveryTimedOut")
    if cancel < final.at:
        final = Phase(cancel, "Cancelled", "Cancelled")
    return Timeline((pending, Phase(dispatch, "Delayed", "Delayed"), final), None, -1)


def _delayed_until_expiry(pending: Phase, target: Target, dispatch: float, back: float, expires_at: float, cancel: float,
                          settings: Settings) -> Timeline:
    """Delayed from ``dispatch``; delivered when the agent is ``back`` if that is before expiry, else DeliveryTimedOut at expiry."""
    delayed = Phase(dispatch, "Delayed", "Delayed")
    expired = Phase(expires_at, "TimedOut", "DeliveryTimedOut")
    if cancel < min(back, expires_at):
        return Timeline((pending, delayed, Phase(cancel, "Cancelled", "Cancelled")), None, -1)
    if back >= expires_at:
        return Timeline((pending, delayed, expired), None, -1)
    ran = _delivered(delayed, target.outcome, back, expires_at, cancel, settings, target.instance_id)
    phases = (pending,) + ran.phases
    if ran.final.at > expires_at:
        # The command expired while this invocation was still running: AWS reports it DeliveryTimedOut.
        phases = tuple(phase for phase in phases if phase.at < expires_at) + (expired,)
        return Timeline(phases, ran.executed_from, -1)
    return Timeline(phases, ran.executed_from, ran.response_code)


def _delivered(pending: Phase, outcome: Outcome, dispatch: float, deadline: float, cancel: float, settings: Settings,
               instance_id: str = "") -> Timeline:
    delivered = dispatch + settings.command_delivery_seconds
    if delivered > deadline:
        final = Phase(deadline, "TimedOut", "DeliveryTimedOut")
        return Timeline((pending, final) if cancel >= deadline else (pending, Phase(cancel, "Cancelled", "Cancelled")), None, -1)
    if cancel < delivered:
        return Timeline((pending, Phase(cancel, "Cancelled", "Cancelled")), None, -1)
    if outcome.details == "InvalidPlatform":
        return Timeline((pending, Phase(delivered, outcome.status, outcome.details)), None, outcome.response_code)
    if outcome.script:
        duration = min(settings.invocation_seconds, SCRIPT_SECONDS)
    else:
        duration = invocation_duration(settings, instance_id) + (reboot_duration(settings, instance_id) if outcome.reboots else 0.0)
    end = delivered + duration
    running = Phase(delivered, "InProgress", "InProgress")
    if cancel < end:
        return Timeline((pending, running, Phase(cancel, "Cancelled", "Cancelled")), delivered, -1)
    return Timeline((pending, running, Phase(end, outcome.status, outcome.details)), delivered, outcome.response_code)


# How long a short script (a health command such as `echo healthy`) runs at most, whatever the patch durations are.
SCRIPT_SECONDS = 5.0


def invocation_duration(settings: Settings, instance_id: str) -> float:
    """How long the plugin runs on this instance: ``invocation_seconds``, or drawn up to ``invocation_max_seconds`` per instance."""
    return drawn_seconds(settings.invocation_seconds, settings.invocation_max_seconds, instance_id, "invocation")


def reboot_duration(settings: Settings, instance_id: str) -> float:
    """How long a reboot (and the agent's re-run of the script) takes on this instance."""
    return drawn_seconds(settings.reboot_seconds, settings.reboot_max_seconds, instance_id, "reboot")


def command_status(timelines: Sequence[Timeline], when: float, max_errors: str, cancel_requested: bool) -> tuple[str, str]:
    """The command's (Status, StatusDetails) at ``when``, rolled up from its invocations the way Run Command reports it."""
    if not timelines:
        return "Failed", "NoInstancesInTag"
    phases = [timeline.at(when) for timeline in timelines]
    if not all(phase.status in TERMINAL for phase in phases):
        started = any(phase.status != "Pending" for phase in phases)
        return ("InProgress", "InProgress") if started else ("Pending", "Pending")
    details = [phase.details for phase in phases]
    threshold = max(1, error_allowance(max_errors, len(timelines)))
    failed = details.count("Failed")
    execution_timeouts = details.count("ExecutionTimedOut")
    if cancel_requested and "Cancelled" in details:
        return "Cancelled", "Cancelled"
    if failed + execution_timeouts >= threshold:
        return ("TimedOut", "ExecutionTimedOut") if execution_timeouts > failed else ("Failed", "Failed")
    if details.count("DeliveryTimedOut") >= threshold:
        return "TimedOut", "DeliveryTimedOut"
    counted = [detail for detail in details if detail != "Undeliverable"]
    if counted and all(detail == "Success" for detail in counted):
        return "Success", "Success"
    if not counted:
        return "Failed", "Failed"
    return "Failed", "Incomplete"


def counts(timelines: Sequence[Timeline], when: float) -> dict[str, int]:
    """TargetCount / CompletedCount / ErrorCount / DeliveryTimedOutCount at ``when``."""
    phases = [timeline.at(when) for timeline in timelines]
    return {
        "TargetCount": len(timelines),
        "CompletedCount": sum(1 for phase in phases if phase.status in TERMINAL),
        "ErrorCount": sum(1 for phase in phases if phase.details in _ERROR_DETAILS),
        "DeliveryTimedOutCount": sum(1 for phase in phases if phase.details == "DeliveryTimedOut"),
    }
