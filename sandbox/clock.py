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
import hashlib
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
    # Realism (see sandbox/realism.py: all off / zero in the "fast" profile).
    # Upper bounds of per-instance durations drawn between the base setting and
    # this (0, or not above the base: always the base).
    "invocation_max_seconds": 0.0,
    "reboot_max_seconds": 0.0,
    # Cap on the lifetime of every credential STS issues (0: no cap beyond AWS's own).
    "credential_max_seconds": 0.0,
    # How long after an AWS-RunPatchBaseline invocation ends its compliance is reported.
    "compliance_delay_seconds": 0.0,
    # Rollback (sandbox/ec2/rollback.py): a root volume replacement task, a volume restored from a snapshot,
    # an attachment or detachment, a StopInstances / StartInstances of a client.
    "root_replace_seconds": 4.0,
    "volume_create_seconds": 2.0,
    "volume_attach_seconds": 1.0,
    "instance_stop_seconds": 2.0,
    "instance_start_seconds": 2.0,
}

# Switches (true/false), all off in the "fast" profile.
DEFAULT_SWITCHES: dict[str, bool] = {
    # AssumeRole credentials expire (DurationSeconds, role chaining cap); expired calls are refused.
    "credentials_expire": False,
    # An unreachable Run Command target stays Delayed until the command expires, then DeliveryTimedOut.
    "delayed_until_expiry": False,
    # AWS-RunPatchBaseline prints a full yum / Windows Update log; after a reboot the output is the re-run's.
    "realistic_output": False,
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
    invocation_max_seconds: float = DEFAULT_SETTINGS["invocation_max_seconds"]
    reboot_max_seconds: float = DEFAULT_SETTINGS["reboot_max_seconds"]
    credential_max_seconds: float = DEFAULT_SETTINGS["credential_max_seconds"]
    compliance_delay_seconds: float = DEFAULT_SETTINGS["compliance_delay_seconds"]
    credentials_expire: bool = DEFAULT_SWITCHES["credentials_expire"]
    delayed_until_expiry: bool = DEFAULT_SWITCHES["delayed_until_expiry"]
    realistic_output: bool = DEFAULT_SWITCHES["realistic_output"]
    realism: str = "fast"
    root_replace_seconds: float = DEFAULT_SETTINGS["root_replace_seconds"]
    volume_create_seconds: float = DEFAULT_SETTINGS["volume_create_seconds"]
    volume_attach_seconds: float = DEFAULT_SETTINGS["volume_attach_seconds"]
    instance_stop_seconds: float = DEFAULT_SETTINGS["instance_stop_seconds"]
    instance_start_seconds: float = DEFAULT_SETTINGS["instance_start_seconds"]

    def updated(self, changes: dict[str, Any]) -> Settings:
        """Return a copy with ``changes`` applied; unknown names and bad values raise ValueError.

        ``realism`` applies that profile first (sandbox/realism.py); the other changes win over it.
        """
        known = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        if "realism" in changes:
            from sandbox.realism import profile_changes  # pylint: disable=import-outside-toplevel

            values["realism"] = str(changes["realism"])
            for name, value in profile_changes(values["realism"], {**DEFAULT_SETTINGS, **DEFAULT_SWITCHES}).items():
                values[name] = _parse(name, value)
        for name, value in changes.items():
            if name != "realism":
                values[name] = _parse(name, value)
        return dataclasses.replace(self, **values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse(name: str, value: Any) -> Any:
    """A setting's value checked against its kind: a switch (bool, or "true"/"false") or a number of seconds."""
    if name in DEFAULT_SWITCHES:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"setting {name} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"setting {name} must be a number, got {value!r}")
    number = float(value)
    if number < 0 or (name == "time_scale" and number <= 0):
        raise ValueError(f"setting {name} must be {'> 0' if name == 'time_scale' else '>= 0'}, got {value!r}")
    return number


def drawn_seconds(base: float, maximum: float, instance_id: str, salt: str) -> float:
    """A duration between ``base`` and ``maximum`` fixed by a hash of the instance (``base`` when there is no range)."""
    if maximum <= base:
        return base
    digest = hashlib.sha256(f"{salt}:{instance_id}".encode()).digest()
    fraction = int.from_bytes(digest[:4], "big") / 0xFFFFFFFF
    return base + fraction * (maximum - base)


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
