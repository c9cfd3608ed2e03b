"""Sandbox time and the timing settings that drive every lazy state transition.

Nothing in the sandbox runs in the background: an AMI, a snapshot or a command
invocation stores the sandbox time it started and the durations that applied
then, and its state is computed whenever somebody reads it. ``time_scale``
makes sandbox time run faster than wall time (the demo and tests stay short
without changing any per-resource logic).
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
from typing import Any, Callable

# The demo's durations (seconds of sandbox time); short enough to watch, long
# enough that a client has to poll.
DEFAULT_SETTINGS: dict[str, float] = {
    "ami_pending_seconds": 3.0,
    "snapshot_pending_seconds": 4.0,
    "command_delivery_seconds": 1.0,
    "invocation_seconds": 2.0,
    "reboot_seconds": 1.0,
    # How long an unreachable agent keeps an invocation "Delayed" before it is
    # given up as Undeliverable (capped by the command's TimeoutSeconds).
    "undeliverable_seconds": 5.0,
    "time_scale": 1.0,
    # 1: AWS calls are authorised against the shipped IAM policies (sandbox/iam_enforcement.py).
    "iam_enforcement": 0.0,
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Durations in sandbox seconds; frozen so a resource can keep the copy it started with."""

    ami_pending_seconds: float = DEFAULT_SETTINGS["ami_pending_seconds"]
    snapshot_pending_seconds: float = DEFAULT_SETTINGS["snapshot_pending_seconds"]
    command_delivery_seconds: float = DEFAULT_SETTINGS["command_delivery_seconds"]
    invocation_seconds: float = DEFAULT_SETTINGS["invocation_seconds"]
    reboot_seconds: float = DEFAULT_SETTINGS["reboot_seconds"]
    undeliverable_seconds: float = DEFAULT_SETTINGS["undeliverable_seconds"]
    time_scale: float = DEFAULT_SETTINGS["time_scale"]
    iam_enforcement: float = DEFAULT_SETTINGS["iam_enforcement"]

    def updated(self, changes: dict[str, Any]) -> Settings:
        """Return a copy with ``changes`` applied; unknown names and bad values raise ValueError."""
        known = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, float] = {}
        for name, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError(f"setting {name} must be a number, got {value!r}")
            number = float(value)
            if number < 0 or (name == "time_scale" and number <= 0):
                raise ValueError(f"setting {name} must be {'> 0' if name == 'time_scale' else '>= 0'}, got {value!r}")
            values[name] = number
        return dataclasses.replace(self, **values)

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


class Clock:
    """Sandbox time in epoch seconds: wall time since the anchor, multiplied by the scale.

    Changing the scale re-anchors, so sandbox time never jumps back: timestamps
    already handed out stay in the past. ``advance`` jumps forward.
    """

    def __init__(self, time_scale: float = 1.0, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._scale = time_scale
        self._wall_anchor = wall()
        self._sandbox_anchor = self._wall_anchor

    @property
    def time_scale(self) -> float:
        return self._scale

    def now(self) -> float:
        with self._lock:
            return self._sandbox_anchor + (self._wall() - self._wall_anchor) * self._scale

    def set_time_scale(self, time_scale: float) -> None:
        with self._lock:
            wall_now = self._wall()
            self._sandbox_anchor += (wall_now - self._wall_anchor) * self._scale
            self._wall_anchor = wall_now
            self._scale = time_scale

    def advance(self, seconds: float) -> float:
        """Jump sandbox time forward (tests: reach the next state without sleeping); returns the new now."""
        if seconds < 0:
            raise ValueError("sandbox time only moves forward")
        with self._lock:
            self._sandbox_anchor += seconds
        return self.now()


def to_datetime(timestamp: float) -> datetime.datetime:
    """Sandbox epoch seconds as the aware UTC datetime moto's serializers expect."""
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)


def to_iso(timestamp: float) -> str:
    """The ISO-8601 string form SSM uses for its StringDateTime fields."""
    return to_datetime(timestamp).isoformat(timespec="milliseconds").replace("+00:00", "Z")
