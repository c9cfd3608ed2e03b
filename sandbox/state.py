"""The sandbox's control object: settings, clock, faults, call counts, the SSM world, and reset.

One ``SandboxState`` exists per running sandbox (``sb.state``); the HTTP control
API under ``/_sandbox/`` is a thin JSON layer over it.
"""

from __future__ import annotations

import threading
from typing import Any

from sandbox.buckets import TokenBuckets
from sandbox.calls import CallCounter
from sandbox.clock import Clock, Settings
from sandbox.credentials import CredentialStore
from sandbox.ec2.backup_images import backup_images
from sandbox.ec2.lookup import locate, locate_by_name, region_instances
from sandbox.faults import Fault, FaultStore
from sandbox.server_errors import ServerErrors
from sandbox.ssm.commands import CommandStore
from sandbox.ssm.managed import LATEST_AGENT_VERSION, ManagedInstance, ManagedRegistry
from sandbox.ssm.views import command_view
from sandbox.sts import RoleRegistry


class FaultControl:
    """``sb.state.faults``: add / remove / list faults, with instance names resolved to ids."""

    def __init__(self, store: FaultStore) -> None:
        self._store = store

    def add(self, kind: str, instance_id: str | None = None, operation: str | None = None, instance_name: str | None = None, **options: Any) -> Fault:
        if instance_name and not instance_id:
            instance_id = locate_by_name(instance_name).instance.id
        return self._store.add(kind, instance_id=instance_id, operation=operation, **options)

    def remove(self, kind: str | None = None, instance_id: str | None = None, operation: str | None = None, fault_id: int | None = None) -> int:
        return self._store.remove(kind=kind, instance_id=instance_id, operation=operation, fault_id=fault_id)

    def list(self) -> list[dict[str, Any]]:
        return [fault.as_dict() for fault in self._store.active()]


class SandboxState:
    def __init__(self, settings: Settings | None = None) -> None:
        self.lock = threading.RLock()
        self._initial_settings = settings or Settings()
        self.settings = self._initial_settings
        self.clock = Clock(self.settings.time_scale, skew=self.settings.clock_skew_seconds)
        self.fault_store = FaultStore(self.clock)
        self.managed = ManagedRegistry(self.clock, self.fault_store)
        self.faults = FaultControl(self.fault_store)
        self.calls = CallCounter()
        self.commands = CommandStore(self.clock, self.fault_store)
        self.roles = RoleRegistry()
        self.credentials = CredentialStore(self.clock)
        self.buckets = TokenBuckets()
        self.server_errors = ServerErrors(self.settings.server_error_seed)

    def now(self) -> float:
        return self.clock.now()

    def update_settings(self, **changes: Any) -> Settings:
        """Change settings (``realism`` applies a whole profile first); resources already started keep the settings they started with."""
        with self.lock:
            previous = self.settings
            self.settings = self.settings.updated(changes)
            self._apply_settings(reseed="server_error_seed" in changes or previous.server_error_seed != self.settings.server_error_seed)
            return self.settings

    def command_log(self) -> list[dict[str, Any]]:
        """Every SendCommand the sandbox accepted: command id, document, instance ids, comment, parameters, time, account, region."""
        return self.commands.command_log()

    def peak_in_progress(self, comment_contains: str | None = None) -> dict[str, Any]:
        """``{"peak": n, "at": t, ...}``: the most invocations InProgress at once so far, over commands whose Comment contains the text."""
        return self.commands.peak_in_progress(self.now(), comment_contains)

    def _apply_settings(self, reseed: bool) -> None:
        if self.settings.time_scale != self.clock.time_scale:
            self.clock.set_time_scale(self.settings.time_scale)
        if self.settings.clock_skew_seconds != self.clock.skew:
            self.clock.set_skew(self.settings.clock_skew_seconds)
        if reseed:
            self.server_errors.reseed(self.settings.server_error_seed)

    def register_managed(self, instance_ids: list[str], online: bool = True, agent_version: str = LATEST_AGENT_VERSION) -> list[ManagedInstance]:
        """Make these instances SSM-managed (wherever they live); unknown ids raise ValueError."""
        found = locate(instance_ids)
        missing = [instance_id for instance_id in instance_ids if instance_id not in found]
        if missing:
            raise ValueError(f"no such instance(s): {', '.join(missing)}")
        with self.lock:
            return [self.managed.register(found[i].instance, found[i].account, found[i].region, online, agent_version) for i in instance_ids]

    def set_agent(self, instance_id: str, online: bool) -> None:
        if self.managed.get(instance_id) is None:
            raise ValueError(f"instance {instance_id} is not SSM-managed")
        self.managed.set_agent(instance_id, online)

    def reset(self) -> None:
        """Forget everything: moto's backends (default AMIs come back) and all sandbox state."""
        from moto.moto_api._internal.models import moto_api_backend  # pylint: disable=import-outside-toplevel

        with self.lock:
            moto_api_backend.reset()
            self.settings = self._initial_settings
            # Nothing that holds a sandbox time survives the reset, so the clock may start over.
            self.clock.restart(self.settings.time_scale, self.settings.clock_skew_seconds)
            self._apply_settings(reseed=True)
            self.buckets.reset()
            self.fault_store.clear()
            self.managed.reset()
            self.commands.reset()
            self.calls.reset()
            self.roles.reset()
            self.credentials.reset()

    def describe(self) -> dict[str, Any]:
        """A JSON-ready dump of sandbox-side state (for tests and curious humans)."""
        now = self.now()
        with self.lock:
            instances: dict[tuple[str, str], dict[str, Any]] = {}
            managed = []
            for entry in self.managed.all():
                key = (entry.account, entry.region)
                if key not in instances:
                    instances[key] = region_instances(*key)
                instance = instances[key].get(entry.instance_id)
                managed.append({
                    "instance_id": entry.instance_id,
                    "account": entry.account,
                    "region": entry.region,
                    "ping_status": self.managed.status(entry, instance),
                    "platform_type": entry.platform_type,
                    "platform_name": entry.platform_name,
                    "agent_version": entry.agent_version,
                })
            commands = []
            for command in self.commands.all():
                timelines = self.commands.timelines(command)
                view = command_view(command, timelines, now)
                commands.append({
                    "command_id": command.command_id,
                    "account": command.account,
                    "region": command.region,
                    "document": command.document.name,
                    "status": view["Status"],
                    "status_details": view["StatusDetails"],
                    "invocations": {
                        planned.target.instance_id: timeline.at(now).details for planned, timeline in zip(command.invocations, timelines)
                    },
                })
            images = backup_images()
            image_reboots = [{"instance_id": image["instance_id"], "image_id": image["image_id"], "at": image["created_at"]}
                             for image in images if image["rebooted_instance"]]
            return {
                "now": now,
                "settings": self.settings.as_dict(),
                "managed": managed,
                "images": images,
                "commands": commands,
                "reboots": sorted(self.commands.reboots(now) + image_reboots, key=lambda reboot: reboot["at"]),
                "faults": self.faults.list(),
                "roles": self.roles.describe(),
                "credentials": self.credentials.describe(),
            }
