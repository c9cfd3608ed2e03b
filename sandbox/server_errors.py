"""Which calls fail with a server error (``server_error_rate``), and whether AWS acted first.

AWS can answer 5xx after carrying a write out (the caller must look before it
retries), so a share ``server_error_applied_ratio`` of the failed writes are
handed to moto first and their answer replaced by the error. Reads never
"apply". A seeded RNG (``server_error_seed``) makes a run reproducible for the
same sequence of calls.
"""

from __future__ import annotations

import random
import threading

BEFORE = "server_error"
AFTER = "server_error_after_apply"


class ServerErrors:
    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(seed)

    def decide(self, write: bool, rate: float, applied_ratio: float) -> tuple[str | None, float]:
        """(None | BEFORE | AFTER, a uniform draw the caller may use to pick the error code)."""
        if rate <= 0:
            return None, 0.0
        with self._lock:
            if self._rng.random() >= rate:
                return None, 0.0
            applied = write and self._rng.random() < applied_ratio
            return (AFTER if applied else BEFORE), self._rng.random()
