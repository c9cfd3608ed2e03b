"""Which EC2 instances run a registered SSM agent, and their ping status.

moto cannot make an instance "managed" at all (DescribeInstanceInformation is
not implemented), so the registry lives here. Ping status is derived, never
stored: registered + agent online + instance running -> Online; instance
stopped/stopping/pending or agent offline -> ConnectionLost; instance
terminated (or gone) -> Inactive. Agent outages are ``agent_offline`` faults,
whose history the fault store keeps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from typing import Any

from sandbox.clock import Clock
from sandbox.ec2.platforms import instance_os
from sandbox.faults import FaultStore

LATEST_AGENT_VERSION = "3.3.1142.0"
_GONE_STATES = {"terminated", "shutting-down"}


@dataclasses.dataclass(frozen=True)
class ManagedInstance:
    instance_id: str
    account: str
    region: str
    registered_at: float
    agent_version: str
    platform_type: str
    platform_name: str
    platform_version: str
    computer_name: str
    ip_address: str


def ping_status(entry: ManagedInstance, instance: Any | None, agent_offline: bool) -> str:
    if instance is None or instance.state in _GONE_STATES:
        return "Inactive"
    if instance.state != "running" or agent_offline:
        return "ConnectionLost"
    return "Online"


def computer_name(instance: Any, platform_type: str) -> str:
    """Windows names itself EC2AMAZ-XXXXXXX; Linux reports its private DNS name."""
    if platform_type == "Windows":
        suffix = hashlib.sha256(instance.id.encode()).hexdigest()[:7].upper()
        return f"EC2AMAZ-{suffix}"
    return instance.private_dns_name


class ManagedRegistry:
    def __init__(self, clock: Clock, faults: FaultStore) -> None:
        self._clock = clock
        self._faults = faults
        self._lock = threading.RLock()
        self._entries: dict[str, ManagedInstance] = {}

    def register(self, instance: Any, account: str, region: str, online: bool = True, agent_version: str = LATEST_AGENT_VERSION) -> ManagedInstance:
        """Make ``instance`` SSM-managed (re-registering keeps the original registration time)."""
        os = instance_os(instance)
        with self._lock:
            previous = self._entries.get(instance.id)
            entry = ManagedInstance(
                instance_id=instance.id,
                account=account,
                region=region,
                registered_at=previous.registered_at if previous else self._clock.now(),
                agent_version=agent_version,
                platform_type=os.platform_type,
                platform_name=os.platform_name,
                platform_version=os.platform_version,
                computer_name=computer_name(instance, os.platform_type),
                ip_address=instance.private_ip or "",
            )
            self._entries[instance.id] = entry
        self.set_agent(instance.id, online)
        return entry

    def set_agent(self, instance_id: str, online: bool) -> None:
        """Bring the instance's agent online or take it offline from now on."""
        if online:
            self._faults.remove(kind="agent_offline", instance_id=instance_id)
        elif not self._faults.agent_offline_at(instance_id, self._clock.now()):
            self._faults.add("agent_offline", instance_id=instance_id)

    def get(self, instance_id: str) -> ManagedInstance | None:
        with self._lock:
            return self._entries.get(instance_id)

    def in_region(self, account: str, region: str) -> list[ManagedInstance]:
        """Managed instances of one account and region, in registration order."""
        with self._lock:
            return [entry for entry in self._entries.values() if entry.account == account and entry.region == region]

    def all(self) -> list[ManagedInstance]:
        with self._lock:
            return list(self._entries.values())

    def agent_offline(self, instance_id: str, when: float | None = None) -> bool:
        return self._faults.agent_offline_at(instance_id, self._clock.now() if when is None else when)

    def status(self, entry: ManagedInstance, instance: Any | None) -> str:
        return ping_status(entry, instance, self.agent_offline(entry.instance_id))

    def last_ping(self, entry: ManagedInstance, instance: Any | None) -> float:
        """Online agents ping continuously; a lost one last pinged when its outage began."""
        now = self._clock.now()
        if self.status(entry, instance) == "Online":
            return now
        since = self._faults.agent_offline_since(entry.instance_id, now)
        return since if since is not None else entry.registered_at

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()
