"""Token-bucket throttling per account, Region and API action, as "Request throttling for the Amazon EC2 API" documents it.

https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html: every
EC2 API action has its own request bucket (one token per request) whose size
and refill rate come from its category (non-mutating, unfiltered and
unpaginated non-mutating, mutating, resource-intensive) or from the
"uncategorized actions" table; RunInstances, StartInstances, StopInstances and
TerminateInstances also have a resource bucket (one token per instance). An
empty bucket answers ``RequestLimitExceeded``.

Buckets refill on WALL time, not on the scaled sandbox clock: throttling is
about how fast the client really sends requests, which time_scale does not
change. ``throttle_bucket_scale`` multiplies every size and refill rate (tests
shrink the buckets instead of sending thousands of requests).

AWS documents no per-API request rates for Systems Manager Run Command or STS
(the SSM quotas page gives throughput only for Parameter Store); the SSM and STS
rates below are conservative guesses.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping

from sandbox.calls import is_write


@dataclasses.dataclass(frozen=True)
class Rate:
    capacity: float  # tokens the bucket holds when full
    refill: float  # tokens added per wall second


# EC2 request buckets by category (bucket maximum capacity, refill rate per second).
EC2_NON_MUTATING = Rate(100, 20)
EC2_UNFILTERED_NON_MUTATING = Rate(50, 10)
EC2_MUTATING = Rate(50, 5)
EC2_RESOURCE_INTENSIVE = Rate(50, 5)
# Use the smaller bucket when called with neither a filter nor pagination (MaxResults / NextToken).
EC2_UNFILTERED_ACTIONS = frozenset({
    "DescribeInstances", "DescribeInstanceStatus", "DescribeNetworkInterfaces", "DescribeSecurityGroups",
    "DescribeSnapshots", "DescribeSpotInstanceRequests", "DescribeVolumes",
})
EC2_RESOURCE_INTENSIVE_ACTIONS = frozenset({
    "AcceptVpcPeeringConnection", "AuthorizeSecurityGroupIngress", "CancelSpotInstanceRequests", "CreateKeyPair",
    "CreateVpcPeeringConnection", "DeleteVpcPeeringConnection", "RejectVpcPeeringConnection", "RevokeSecurityGroupIngress",
    "RequestSpotInstances",
})
# The "uncategorized actions" the patching workflow (and its tests) can call.
EC2_UNCATEGORIZED: Mapping[str, Rate] = {
    "CopyImage": Rate(100, 1),
    "CreateLaunchTemplateVersion": Rate(100, 5),
    "CreateSnapshot": Rate(100, 5),
    "CreateSnapshots": Rate(100, 5),
    "CreateTags": Rate(100, 10),
    "CreateVolume": Rate(100, 5),
    "DeleteSnapshot": Rate(100, 5),
    "DeleteTags": Rate(100, 10),
    "DeleteVolume": Rate(100, 5),
    "DeregisterImage": Rate(100, 5),
    "ModifyImageAttribute": Rate(100, 5),
    "ModifyLaunchTemplate": Rate(100, 5),
    "ModifySnapshotAttribute": Rate(100, 5),
    "RunInstances": Rate(5, 2),
    "StartInstances": Rate(5, 2),
    "TerminateInstances": Rate(100, 5),
}
# Resource buckets: one token per instance the request acts on.
EC2_RESOURCE_RATES: Mapping[str, Rate] = {
    "RunInstances": Rate(1000, 2),
    "TerminateInstances": Rate(1000, 20),
    "StartInstances": Rate(1000, 2),
    "StopInstances": Rate(1000, 20),
}
# Guesses (undocumented): SSM reads and writes, STS.
SSM_READ = Rate(40, 10)
SSM_WRITE = Rate(20, 5)
STS_ANY = Rate(100, 50)


def request_rate(service: str, operation: str, params: Mapping[str, str]) -> tuple[str, Rate]:
    """(bucket name, rate) of one request; the name keeps the unfiltered bucket apart from the standard one."""
    if service == "ec2":
        if operation in EC2_UNCATEGORIZED:
            return operation, EC2_UNCATEGORIZED[operation]
        if operation in EC2_RESOURCE_INTENSIVE_ACTIONS:
            return operation, EC2_RESOURCE_INTENSIVE
        if is_write(operation):
            return operation, EC2_MUTATING
        if operation in EC2_UNFILTERED_ACTIONS and not _filtered_or_paginated(params):
            return operation + "#unfiltered", EC2_UNFILTERED_NON_MUTATING
        return operation, EC2_NON_MUTATING
    if service == "ssm":
        return operation, SSM_WRITE if is_write(operation) else SSM_READ
    return operation, STS_ANY


def _filtered_or_paginated(params: Mapping[str, str]) -> bool:
    return any(name.startswith("Filter.") or name in ("MaxResults", "NextToken") for name in params)


def resource_cost(service: str, operation: str, params: Mapping[str, str]) -> tuple[Rate, int] | None:
    """(resource bucket rate, instances acted on) for the EC2 actions with resource rate limiting."""
    if service != "ec2" or operation not in EC2_RESOURCE_RATES:
        return None
    if operation == "RunInstances":
        try:
            count = int(params.get("MaxCount", "1"))
        except ValueError:
            count = 1
    else:
        count = sum(1 for name in params if name.startswith("InstanceId."))
    return EC2_RESOURCE_RATES[operation], max(1, count)


class _Bucket:
    __slots__ = ("capacity", "refill", "tokens", "stamp")

    def __init__(self, rate: Rate, scale: float, now: float) -> None:
        # At least one token, or a shrunken bucket would refuse everything forever.
        self.capacity = max(1.0, rate.capacity * scale)
        self.refill = rate.refill * scale
        self.tokens = self.capacity
        self.stamp = now

    def refresh(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.refill)
        self.stamp = now


class TokenBuckets:
    """Every (account, Region, service, bucket) bucket, created full on first use."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str, str], _Bucket] = {}
        self._scale = 1.0

    def admit(self, service: str, operation: str, account: str, region: str, params: Mapping[str, str], scale: float) -> bool:
        """Take the request's tokens (request bucket, and resource bucket if any); False (nothing taken) if one is short."""
        name, rate = request_rate(service, operation, params)
        resources = resource_cost(service, operation, params)
        with self._lock:
            if scale != self._scale:
                self._buckets.clear()
                self._scale = scale
            now = self.wall()
            needs = [(self._bucket((account, region, service, name), rate, now), 1.0)]
            if resources is not None:
                resource_rate, count = resources
                bucket = self._bucket((account, region, service, operation + "#resources"), resource_rate, now)
                needs.append((bucket, min(float(count), bucket.capacity)))
            for bucket, cost in needs:
                bucket.refresh(now)
                if bucket.tokens < cost:
                    return False
            for bucket, cost in needs:
                bucket.tokens -= cost
            return True

    def _bucket(self, key: tuple[str, str, str, str], rate: Rate, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(rate, self._scale, now)
        return bucket

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
