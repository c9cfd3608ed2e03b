"""Injected failures: what should go wrong, for which instance or API operation.

Faults are read at the moment AWS would decide the outcome: ``ami_fail`` when
CreateImage is called, ``patch_fail`` when SendCommand is called, ``throttle``
on every request. ``agent_offline`` is different: its history matters (an
invocation is undeliverable if the agent was offline *when its turn came*), so
removing a fault only stamps ``removed_at`` and the store keeps it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import threading
from typing import Any

from sandbox.clock import Clock

# kind -> (what it is keyed by, options it accepts)
FAULT_KINDS: dict[str, tuple[str, frozenset[str]]] = {
    "ami_fail": ("instance", frozenset({"code", "message", "count"})),
    "snapshot_error": ("instance", frozenset({"device", "count"})),
    "ami_stuck": ("instance", frozenset({"count"})),
    "status_impaired": ("instance", frozenset({"check"})),
    "patch_fail": ("instance", frozenset({"count"})),
    "patch_timeout": ("instance", frozenset({"count"})),
    "command_fail": ("instance", frozenset({"count"})),
    "agent_offline": ("instance", frozenset()),
    "rollback_fail": ("instance", frozenset({"step", "count"})),
    "throttle": ("operation", frozenset({"rate", "every", "count", "seed"})),
    # The caller's policy does not allow the action (e.g. one written before the collection used it): AWS's refusal.
    "access_denied": ("operation", frozenset({"count"})),
}

FOREVER = math.inf
# The steps of a rollback the rollback_fail fault can break (sandbox/ec2/rollback.py).
ROLLBACK_STEPS = ("root_replace", "volume_create", "attach", "start")


@dataclasses.dataclass
class Fault:
    fault_id: int
    kind: str
    instance_id: str | None
    operation: str | None
    options: dict[str, Any]
    added_at: float
    removed_at: float = FOREVER
    # How many more times the fault fires (None: unlimited).
    remaining: int | None = None
    # Throttle bookkeeping: calls seen, and a private RNG so ``rate`` is reproducible.
    seen: int = 0
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    def active_at(self, when: float) -> bool:
        return self.added_at <= when < self.removed_at and self.remaining != 0

    def matches_operation(self, operation_key: str) -> bool:
        """``ec2:CreateImage`` matches a fault on ``ec2:CreateImage``, on plain ``CreateImage``, on ``ec2:*`` or on ``*`` (every call)."""
        service, _sep, operation = operation_key.partition(":")
        return self.operation in (operation_key, operation, "*", service + ":*")

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.fault_id, "kind": self.kind, "added_at": self.added_at}
        if self.instance_id:
            data["instance_id"] = self.instance_id
        if self.operation:
            data["operation"] = self.operation
        if self.remaining is not None:
            data["remaining"] = self.remaining
        data.update({key: value for key, value in self.options.items() if key != "count"})
        return data


class FaultStore:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        # Bumped whenever agent availability history changes: command schedules cache on it.
        self.agent_history_version = 0

    def add(self, kind: str, instance_id: str | None = None, operation: str | None = None, **options: Any) -> Fault:
        """Register a fault; raises ValueError for an unknown kind, a missing key or an unknown option."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
        keyed_by, allowed = FAULT_KINDS[kind]
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(f"fault {kind} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(sorted(allowed)) or 'none'}")
        if keyed_by == "instance" and not instance_id:
            raise ValueError(f"fault {kind} needs an instance_id")
        if keyed_by == "operation":
            if not operation:
                raise ValueError(f"fault {kind} needs an operation (e.g. 'ec2:CreateImage' or 'SendCommand')")
            _validate_throttle(options)
        if kind == "rollback_fail" and options.get("step", "root_replace") not in ROLLBACK_STEPS:
            raise ValueError(f"rollback_fail step must be one of {', '.join(ROLLBACK_STEPS)}, got {options.get('step')!r}")
        count = options.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be a positive integer, got {count!r}")
        with self._lock:
            fault = Fault(
                fault_id=next(self._ids),
                kind=kind,
                instance_id=instance_id if keyed_by == "instance" else None,
                operation=operation if keyed_by == "operation" else None,
                options=dict(options),
                added_at=self._clock.now(),
                remaining=count,
                rng=random.Random(options.get("seed", 0)),
            )
            self._faults.append(fault)
            if kind == "agent_offline":
                self.agent_history_version += 1
            return fault

    def remove(self, kind: str | None = None, instance_id: str | None = None, operation: str | None = None, fault_id: int | None = None) -> int:
        """End every active fault matching all given criteria (none given: all of them); returns how many."""
        now = self._clock.now()
        removed = 0
        with self._lock:
            for fault in self._faults:
                if not fault.active_at(now):
                    continue
                if kind is not None and fault.kind != kind:
                    continue
                if instance_id is not None and fault.instance_id != instance_id:
                    continue
                if operation is not None and fault.operation != operation:
                    continue
                if fault_id is not None and fault.fault_id != fault_id:
                    continue
                fault.removed_at = now
                removed += 1
                if fault.kind == "agent_offline":
                    self.agent_history_version += 1
        return removed

    def clear(self) -> None:
        """Forget every fault, history included (only for a full sandbox reset)."""
        with self._lock:
            self._faults = []
            self.agent_history_version += 1

    def active(self) -> list[Fault]:
        now = self._clock.now()
        with self._lock:
            return [fault for fault in self._faults if fault.active_at(now)]

    def find(self, kind: str, instance_id: str) -> Fault | None:
        """The active fault of this kind for this instance, without using it up."""
        now = self._clock.now()
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and fault.instance_id == instance_id and fault.active_at(now):
                    return fault
        return None

    def take(self, kind: str, instance_id: str) -> Fault | None:
        """Like ``find``, but a fault with a ``count`` is used up by one."""
        with self._lock:
            fault = self.find(kind, instance_id)
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
            return fault

    def agent_offline_at(self, instance_id: str, when: float) -> bool:
        with self._lock:
            return any(
                fault.kind == "agent_offline" and fault.instance_id == instance_id and fault.added_at <= when < fault.removed_at
                for fault in self._faults
            )

    def agent_offline_since(self, instance_id: str, when: float) -> float | None:
        """When the agent outage covering ``when`` began (None if the agent was online then)."""
        with self._lock:
            starts = [
                fault.added_at
                for fault in self._faults
                if fault.kind == "agent_offline" and fault.instance_id == instance_id and fault.added_at <= when < fault.removed_at
            ]
        return min(starts) if starts else None

    def agent_online_from(self, instance_id: str, when: float) -> float:
        """The first moment at or after ``when`` the agent is online (inf: offline with no end yet)."""
        with self._lock:
            outages = [(fault.added_at, fault.removed_at) for fault in self._faults if fault.kind == "agent_offline" and fault.instance_id == instance_id]
        moment = when
        moved = True
        while moved:
            moved = False
            for start, end in outages:
                if start <= moment < end:
                    moment, moved = end, True
        return moment

    def should_deny(self, operation_key: str) -> bool:
        """Decide (and record) whether this call of ``operation_key`` is refused as unauthorised (``access_denied``)."""
        return self._fires("access_denied", operation_key)

    def should_throttle(self, operation_key: str) -> bool:
        """Decide (and record) whether this call of ``operation_key`` is throttled."""
        return self._fires("throttle", operation_key)

    def _fires(self, kind: str, operation_key: str) -> bool:
        now = self._clock.now()
        with self._lock:
            for fault in self._faults:
                if fault.kind != kind or not fault.active_at(now) or not fault.matches_operation(operation_key):
                    continue
                fault.seen += 1
                every = fault.options.get("every")
                if every is not None:
                    hit = fault.seen % every == 0
                else:
                    hit = fault.rng.random() < float(fault.options.get("rate", 1.0))
                if hit:
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return True
        return False


def _validate_throttle(options: dict[str, Any]) -> None:
    if "rate" in options and "every" in options:
        raise ValueError("throttle takes either rate or every, not both")
    rate = options.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"throttle rate must be between 0 and 1, got {rate!r}")
    every = options.get("every")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"throttle every must be a positive integer, got {every!r}")
