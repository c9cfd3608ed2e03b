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

from sandbox import realism as profiles

# The demo's durations (seconds of sandbox time); short enough to watch, long
# enough that a client has to poll.
DEFAULT_SETTINGS: dict[str, Any] = {
    "ami_pending_seconds": 3.0,
    "snapshot_pending_seconds": 4.0,
    "command_delivery_seconds": 1.0,
    "invocation_seconds": 2.0,
    "reboot_seconds": 1.0,
    # How long an unreachable agent keeps an invocation "Delayed" before it is
    # given up as Undeliverable (capped by the command's TimeoutSeconds).
    "undeliverable_seconds": 5.0,
    "time_scale": 1.0,
    # Realism (sandbox.realism): the fast profile's values, i.e. AWS's unkindness turned off.
    "realism": "fast",
    "describe_visibility_seconds": 0.0,
    "snapshot_id_delay_seconds": 0.0,
    "server_error_rate": 0.0,
    "server_error_applied_ratio": 0.0,
    "server_error_seed": 0,
    "throttle_buckets": False,
    "throttle_bucket_scale": 1.0,
    "clock_skew_seconds": 0.0,
    # A request signed further than this from AWS's time is refused (RequestExpired), as AWS does (0: never).
    "signature_window_seconds": 900.0,
    "snapshot_in_use_seconds": 0.0,
    "ami_pending_max_seconds": 0.0,
    "snapshot_pending_max_seconds": 0.0,
    "image_waits_for_snapshots": False,
    # Upper bounds of per-instance Run Command durations drawn between the base setting and this (0: always the base).
    "invocation_max_seconds": 0.0,
    "reboot_max_seconds": 0.0,
    # Cap on the lifetime of every credential STS issues (0: no cap beyond AWS's own; > 0 also turns expiry on).
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
    # AssumeRole credentials expire (DurationSeconds, role chaining cap); expired calls are refused.
    "credentials_expire": False,
    # An unreachable Run Command target stays Delayed until the command expires, then DeliveryTimedOut.
    "delayed_until_expiry": False,
    # AWS-RunPatchBaseline prints a full yum / Windows Update log; after a reboot the output is the re-run's.
    "realistic_output": False,
    # 1: AWS calls are authorised against the shipped IAM policies (sandbox/iam_enforcement.py).
    "iam_enforcement": 0.0,
}

# How each setting is checked; anything not named here is a duration (a number >= 0).
_BOOLEAN = frozenset({"throttle_buckets", "image_waits_for_snapshots", "credentials_expire", "delayed_until_expiry", "realistic_output"})
_FRACTION = frozenset({"server_error_rate", "server_error_applied_ratio"})
_POSITIVE = frozenset({"time_scale", "throttle_bucket_scale"})
_SIGNED = frozenset({"clock_skew_seconds"})
_INTEGER = frozenset({"server_error_seed"})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Durations in sandbox seconds and the realism switches; frozen so a resource can keep the copy it started with."""

    ami_pending_seconds: float = DEFAULT_SETTINGS["ami_pending_seconds"]
    snapshot_pending_seconds: float = DEFAULT_SETTINGS["snapshot_pending_seconds"]
    command_delivery_seconds: float = DEFAULT_SETTINGS["command_delivery_seconds"]
    invocation_seconds: float = DEFAULT_SETTINGS["invocation_seconds"]
    reboot_seconds: float = DEFAULT_SETTINGS["reboot_seconds"]
    undeliverable_seconds: float = DEFAULT_SETTINGS["undeliverable_seconds"]
    time_scale: float = DEFAULT_SETTINGS["time_scale"]
    # The profile last applied; see sandbox/realism.py and the README's "Realism" section.
    realism: str = DEFAULT_SETTINGS["realism"]
    describe_visibility_seconds: float = DEFAULT_SETTINGS["describe_visibility_seconds"]
    snapshot_id_delay_seconds: float = DEFAULT_SETTINGS["snapshot_id_delay_seconds"]
    server_error_rate: float = DEFAULT_SETTINGS["server_error_rate"]
    server_error_applied_ratio: float = DEFAULT_SETTINGS["server_error_applied_ratio"]
    server_error_seed: int = DEFAULT_SETTINGS["server_error_seed"]
    throttle_buckets: bool = DEFAULT_SETTINGS["throttle_buckets"]
    throttle_bucket_scale: float = DEFAULT_SETTINGS["throttle_bucket_scale"]
    clock_skew_seconds: float = DEFAULT_SETTINGS["clock_skew_seconds"]
    signature_window_seconds: float = DEFAULT_SETTINGS["signature_window_seconds"]
    snapshot_in_use_seconds: float = DEFAULT_SETTINGS["snapshot_in_use_seconds"]
    ami_pending_max_seconds: float = DEFAULT_SETTINGS["ami_pending_max_seconds"]
    snapshot_pending_max_seconds: float = DEFAULT_SETTINGS["snapshot_pending_max_seconds"]
    image_waits_for_snapshots: bool = DEFAULT_SETTINGS["image_waits_for_snapshots"]
    invocation_max_seconds: float = DEFAULT_SETTINGS["invocation_max_seconds"]
    reboot_max_seconds: float = DEFAULT_SETTINGS["reboot_max_seconds"]
    credential_max_seconds: float = DEFAULT_SETTINGS["credential_max_seconds"]
    compliance_delay_seconds: float = DEFAULT_SETTINGS["compliance_delay_seconds"]
    credentials_expire: bool = DEFAULT_SETTINGS["credentials_expire"]
    delayed_until_expiry: bool = DEFAULT_SETTINGS["delayed_until_expiry"]
    realistic_output: bool = DEFAULT_SETTINGS["realistic_output"]
    iam_enforcement: float = DEFAULT_SETTINGS["iam_enforcement"]
    root_replace_seconds: float = DEFAULT_SETTINGS["root_replace_seconds"]
    volume_create_seconds: float = DEFAULT_SETTINGS["volume_create_seconds"]
    volume_attach_seconds: float = DEFAULT_SETTINGS["volume_attach_seconds"]
    instance_stop_seconds: float = DEFAULT_SETTINGS["instance_stop_seconds"]
    instance_start_seconds: float = DEFAULT_SETTINGS["instance_start_seconds"]

    def updated(self, changes: dict[str, Any]) -> Settings:
        """Return a copy with ``changes`` applied; unknown names and bad values raise ValueError.

        ``realism`` applies its profile first (every realism setting at once); the other
        settings in ``changes`` then override the profile's values.
        """
        known = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        if "realism" in changes:
            values.update(profiles.profile(str(changes["realism"])))
            values["realism"] = changes["realism"]
        for name, value in changes.items():
            if name != "realism":
                values[name] = _checked(name, value)
        return dataclasses.replace(self, **values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _checked(name: str, value: Any) -> Any:
    """``value`` converted to the setting's type; ValueError when it does not fit."""
    if name in _BOOLEAN:
        # JSON clients and CLI flags may send "true"/"false".
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"setting {name} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"setting {name} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"setting {name} must be a number, got {value!r}") from None
    if name in _INTEGER:
        if number != int(number):
            raise ValueError(f"setting {name} must be an integer, got {value!r}")
        return int(number)
    if name in _SIGNED:
        return number
    if name in _FRACTION and not 0 <= number <= 1:
        raise ValueError(f"setting {name} must be between 0 and 1, got {value!r}")
    if name in _POSITIVE and number <= 0:
        raise ValueError(f"setting {name} must be > 0, got {value!r}")
    if number < 0:
        raise ValueError(f"setting {name} must be >= 0, got {value!r}")
    return number


def drawn_seconds(base: float, maximum: float, instance_id: str, salt: str) -> float:
    """A duration between ``base`` and ``maximum`` fixed by the instance (``base`` when there is no range)."""
    return profiles.draw(instance_id, base, maximum, salt)


class Clock:
    """Sandbox time in epoch seconds: wall time since the anchor, multiplied by the scale, plus the skew.

    Changing the scale re-anchors, so sandbox time never jumps back: timestamps
    already handed out stay in the past. ``advance`` jumps forward. The skew
    (``clock_skew_seconds``) is how far AWS's clock is from the controller's:
    changing it moves sandbox time by the difference, backwards too, so set it
    at start or right after a reset, before any resource exists.
    """

    def __init__(self, time_scale: float = 1.0, wall: Callable[[], float] = time.time, skew: float = 0.0) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._scale = time_scale
        self._skew = skew
        self._wall_anchor = wall()
        self._sandbox_anchor = self._wall_anchor + skew

    @property
    def time_scale(self) -> float:
        return self._scale

    @property
    def skew(self) -> float:
        return self._skew

    def now(self) -> float:
        with self._lock:
            return self._sandbox_anchor + (self._wall() - self._wall_anchor) * self._scale

    def set_time_scale(self, time_scale: float) -> None:
        with self._lock:
            wall_now = self._wall()
            self._sandbox_anchor += (wall_now - self._wall_anchor) * self._scale
            self._wall_anchor = wall_now
            self._scale = time_scale

    def set_skew(self, skew: float) -> None:
        """Run ``skew`` seconds from the controller's clock (relative to the unskewed sandbox time)."""
        with self._lock:
            self._sandbox_anchor += skew - self._skew
            self._skew = skew

    def restart(self, time_scale: float, skew: float) -> None:
        """Sandbox time = the controller's time + ``skew`` again, forgetting ``advance`` (only when nothing exists: a reset)."""
        with self._lock:
            self._wall_anchor = self._wall()
            self._sandbox_anchor = self._wall_anchor + skew
            self._scale = time_scale
            self._skew = skew

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
