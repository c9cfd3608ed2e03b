"""Cross-account roles of a landing zone, with the ExternalId check AWS makes and moto skips.

moto's AssumeRole hands out credentials for any role ARN (and maps them to the
role's account, which is what makes cross-account seeding work). A scenario
registers its roles here; assuming a registered role with a wrong or missing
ExternalId is then refused with AccessDenied, as AWS's trust policy would.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.responses import ActionResult
from moto.sts.exceptions import STSClientError
from moto.sts.responses import TokenResponse

from sandbox import moto_hooks, runtime


class RoleRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._external_ids: dict[str, str | None] = {}

    def register(self, role_arn: str, external_id: str | None) -> None:
        with self._lock:
            self._external_ids[role_arn] = external_id

    def check(self, role_arn: str, external_id: str | None, caller_arn: str) -> None:
        """Raise AccessDenied if ``role_arn`` is registered with a different ExternalId."""
        with self._lock:
            if role_arn not in self._external_ids:
                return
            expected = self._external_ids[role_arn]
        if expected is not None and external_id != expected:
            raise STSClientError("AccessDenied", f"User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}")

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {arn: {"external_id": external_id} for arn, external_id in self._external_ids.items()}

    def reset(self) -> None:
        with self._lock:
            self._external_ids.clear()


def assume_role(self: TokenResponse) -> ActionResult:
    caller = f"arn:aws:iam::{self.current_account}:user/moto"
    runtime.current().roles.check(self._get_param("RoleArn"), self._get_param("ExternalId"), caller)  # pylint: disable=protected-access
    return moto_hooks.original(TokenResponse, "assume_role")(self)


def install() -> None:
    moto_hooks.replace(TokenResponse, "assume_role", assume_role)
