"""Per-operation API call counter.

The project's speed target is stated in API calls per instance, which (unlike
seconds) do not depend on the machine, so every AWS request that reaches the
sandbox is counted here, throttled ones included.
"""

from __future__ import annotations

import collections
import threading
from typing import Any


class CallCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: collections.Counter[str] = collections.Counter()
        self._by_account: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._by_region: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._throttled: collections.Counter[str] = collections.Counter()

    def record(self, operation: str, account: str, region: str, throttled: bool) -> None:
        """Count one call of ``operation`` ("ec2:CreateImage") made as ``account`` in ``region``."""
        with self._lock:
            self._operations[operation] += 1
            self._by_account[account][operation] += 1
            self._by_region[region][operation] += 1
            if throttled:
                self._throttled[operation] += 1

    def reset(self) -> None:
        with self._lock:
            self._operations.clear()
            self._by_account.clear()
            self._by_region.clear()
            self._throttled.clear()

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
            }
