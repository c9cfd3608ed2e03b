"""Realism profiles: named sets of settings that make the sandbox as unkind as AWS.

``fast`` (the default) keeps every realism behaviour off and the short demo
durations; ``aws`` turns them on with realistic values. A profile is applied by
``Settings.updated({"realism": name})``: every key any profile sets takes the
profile's value (or its default when the profile does not name it), then the
explicit settings of the same update win. Each helper adds its own keys here.
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    "fast": {},
    "aws": {
        # STS: credentials expire on the sandbox clock (AssumeRole API reference).
        "credentials_expire": True,
        # Run Command: an unreachable target stays Delayed until the command expires.
        "delayed_until_expiry": True,
        # Plugin output as long as AWS-RunPatchBaseline's, and the re-run after a reboot.
        "realistic_output": True,
        # Patch compliance shows up a while after the invocation ends.
        "compliance_delay_seconds": 60.0,
        # Patch runs of 3-15 minutes, reboots of 1-3 minutes (drawn per instance).
        "invocation_seconds": 180.0,
        "invocation_max_seconds": 900.0,
        "reboot_seconds": 60.0,
        "reboot_max_seconds": 180.0,
    },
}


def profile_changes(name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The settings profile ``name`` sets: its own values, and the defaults of keys only other profiles set."""
    if name not in PROFILES:
        raise ValueError(f"unknown realism profile {name!r}; known: {', '.join(sorted(PROFILES))}")
    keys = {key for profile in PROFILES.values() for key in profile}
    return {key: PROFILES[name].get(key, defaults[key]) for key in sorted(keys)}
