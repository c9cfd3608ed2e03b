"""Realism profiles: one word (``realism: fast | aws``) that sets every realism setting at once.

``fast`` is the demo's kind sandbox (what the unit tests were written against);
``aws`` turns on every way AWS is unkind to a patching tool, at the rates
sandbox/README.md explains with the AWS page each one follows. Explicit
settings given together with ``realism`` override the profile's values.

Each table maps a setting to its (fast, aws) values. The fast values are also
the defaults of ``sandbox.clock.Settings`` (a unit test checks they agree).
Durations are sandbox seconds (scaled clock); rates are 0..1.
"""

from __future__ import annotations

import hashlib
from typing import Any

# EC2 realism and the shared machinery (errors, throttling, clock).
EC2_AND_SHARED: dict[str, tuple[Any, Any]] = {
    # Eventual consistency of a new image and its snapshots (AWS documents no figure: guesses).
    "describe_visibility_seconds": (0.0, 10.0),
    "snapshot_id_delay_seconds": (0.0, 30.0),
    # Server errors on any operation; a share of the failed writes took effect first.
    "server_error_rate": (0.0, 0.01),
    "server_error_applied_ratio": (0.0, 0.5),
    # EC2's documented token buckets (and guessed ones for SSM / STS), refilled on wall time.
    "throttle_buckets": (False, True),
    "throttle_bucket_scale": (1.0, 1.0),
    # The sandbox (AWS) clock runs this far from the controller's: here 2 minutes behind it.
    "clock_skew_seconds": (0.0, -120.0),
    # DeleteSnapshot right after DeregisterImage answers InvalidSnapshot.InUse for this long (guess).
    "snapshot_in_use_seconds": (0.0, 180.0),
    # CreateImage durations: drawn per resource in [x_seconds, x_max_seconds] (max 0: exactly x_seconds).
    "ami_pending_seconds": (3.0, 300.0),
    "ami_pending_max_seconds": (0.0, 1200.0),
    "snapshot_pending_seconds": (4.0, 120.0),
    "snapshot_pending_max_seconds": (0.0, 1800.0),
    # An image is available only once every snapshot of it has completed.
    "image_waits_for_snapshots": (False, True),
}

# STS credential expiry and Run Command realism (helper h1b adds its settings here, same form).
SSM_AND_STS: dict[str, tuple[Any, Any]] = {
    # STS: credentials expire on the sandbox clock (AssumeRole API reference).
    "credentials_expire": (False, True),
    "credential_max_seconds": (0.0, 0.0),
    # Run Command: an unreachable target stays Delayed until the command expires.
    "delayed_until_expiry": (False, True),
    # Plugin output as long as AWS-RunPatchBaseline's, and the re-run after a reboot.
    "realistic_output": (False, True),
    # Patch compliance shows up a while after the invocation ends (AWS gives no figure: a guess).
    "compliance_delay_seconds": (0.0, 60.0),
    # Patch runs of 3-15 minutes, reboots of 1-3 minutes (drawn per instance).
    "invocation_seconds": (2.0, 180.0),
    "invocation_max_seconds": (0.0, 900.0),
    "reboot_seconds": (1.0, 60.0),
    "reboot_max_seconds": (0.0, 180.0),
}

PROFILE_NAMES = ("fast", "aws")


def profile(name: str) -> dict[str, Any]:
    """Every realism setting's value in profile ``name``; ValueError for an unknown profile."""
    if name not in PROFILE_NAMES:
        raise ValueError(f"unknown realism profile {name!r}; known: {', '.join(PROFILE_NAMES)}")
    column = PROFILE_NAMES.index(name)
    return {setting: values[column] for table in (EC2_AND_SHARED, SSM_AND_STS) for setting, values in table.items()}


def draw(resource_id: str, low: float, high: float, salt: str = "") -> float:
    """A duration in [low, high] that depends only on the resource id (same id, same duration, any process).

    ``high`` at or below ``low`` means exactly ``low`` (the fast profile's fixed durations).
    """
    if high <= low:
        return low
    digest = hashlib.sha256(f"{salt}:{resource_id}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2 ** 64
    return low + (high - low) * fraction
