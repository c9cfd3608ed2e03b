"""Per-operation API call counter and the call log.

The project's speed target is stated in API calls per instance, which (unlike
seconds) do not depend on the machine, so every AWS request that reaches the
sandbox is counted here, throttled ones included. The log keeps each call
(wall time, sandbox time, operation, account, region, write or read, the HTTP
status answered) so tests can assert what a client did and when, e.g. that a
write was never blindly retried after a 5xx; it is a ring buffer, so a long
benchmark keeps only the newest ``LOG_CAPACITY`` calls.
"""

from __future__ import annotations

import collections
import sys
import threading
from typing import Any, NamedTuple

LOG_CAPACITY = 200_000
# EC2's own split: Describe*/List*/Get* (and Search*) retrieve data, everything else acts.
_READ_PREFIXES = ("Describe", "List", "Get", "Search")


def is_write(operation: str) -> bool:
    """True for an operation that creates, changes or deletes something ("ec2:CreateImage" or "CreateImage")."""
    return not operation.rpartition(":")[2].startswith(_READ_PREFIXES)


class LoggedCall(NamedTuple):
    wall: float
    sandbox_time: float
    operation: str
    account: str
    region: str
    write: bool
    status: int
    # What the sandbox did to the call: None (moto answered), "throttled", "server_error" (not carried
    # out), "server_error_after_apply" (carried out, then answered 5xx).
    injected: str | None

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


class CallCounter:
    def __init__(self, log_capacity: int = LOG_CAPACITY) -> None:
        self._lock = threading.Lock()
        self._operations: collections.Counter[str] = collections.Counter()
        self._by_account: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._by_region: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._throttled: collections.Counter[str] = collections.Counter()
        self._server_errors: collections.Counter[str] = collections.Counter()
        self._log: collections.deque[LoggedCall] = collections.deque(maxlen=log_capacity)

    def record(self, operation: str, account: str, region: str, throttled: bool, *, status: int = 200, wall: float = 0.0,
               sandbox_time: float = 0.0, injected: str | None = None) -> None:
        """Count one call of ``operation`` ("ec2:CreateImage") made as ``account`` in ``region``, and log it."""
        # Interned: 200,000 log entries share a handful of operation/account/region strings.
        operation, account, region = sys.intern(operation), sys.intern(account), sys.intern(region)
        entry = LoggedCall(wall, sandbox_time, operation, account, region, is_write(operation), status, injected)
        with self._lock:
            self._operations[operation] += 1
            self._by_account[account][operation] += 1
            self._by_region[region][operation] += 1
            if throttled:
                self._throttled[operation] += 1
            if status >= 500:
                self._server_errors[operation] += 1
            self._log.append(entry)

    def reset(self) -> None:
        with self._lock:
            self._operations.clear()
            self._by_account.clear()
            self._by_region.clear()
            self._throttled.clear()
            self._server_errors.clear()
            self._log.clear()

    def log(self, since: float | None = None) -> list[dict[str, Any]]:
        """Every logged call (oldest first), or those made at or after wall time ``since`` (epoch seconds)."""
        with self._lock:
            entries = list(self._log)
        return [entry.as_dict() for entry in entries if since is None or entry.wall >= since]

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy: ``operations`` is the flat {"ec2:CreateImage": n} map."""
        with self._lock:
            return {
                "total": sum(self._operations.values()),
                "operations": dict(sorted(self._operations.items())),
                "by_account": {account: dict(sorted(ops.items())) for account, ops in sorted(self._by_account.items())},
                "by_region": {region: dict(sorted(ops.items())) for region, ops in sorted(self._by_region.items())},
                "throttled_total": sum(self._throttled.values()),
                "throttled": dict(sorted(self._throttled.items())),
                "server_errors_total": sum(self._server_errors.values()),
                "server_errors": dict(sorted(self._server_errors.items())),
            }
