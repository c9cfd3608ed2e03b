"""Cross-account roles of a landing zone, with the checks AWS makes and moto skips.

moto's AssumeRole hands out credentials for any role ARN (and maps them to the
role's account, which is what makes cross-account seeding work). A scenario
registers its roles here; assuming a registered role with a wrong or missing
ExternalId is then refused with AccessDenied, as AWS's trust policy would.

With ``credentials_expire`` (see sandbox/credentials.py) AssumeRole also does
what the STS API reference (AssumeRole, DurationSeconds) describes:
DurationSeconds 900..43200, default 3,600, at most the role's
MaxSessionDuration (IAM role if moto knows it, else AWS's default of 3,600),
and at most 3,600 when the caller's own key came from AssumeRole (role
chaining); ``Expiration`` is on the sandbox clock. ``credential_max_seconds``
shortens every lifetime (the answer's Expiration says the shortened one).
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.responses import ActionResult
from moto.iam.models import iam_backends
from moto.sts.exceptions import STSClientError, STSValidationError
from moto.sts.responses import TokenResponse

from sandbox import moto_hooks, runtime
from sandbox.clock import Settings, to_datetime
from sandbox.credentials import CHAINED_MAX_SECONDS


class RoleRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._external_ids: dict[str, str | None] = {}
        # Accounts (organization members, see sandbox/organizations.py) where only roles that exist in moto's IAM can be assumed.
        self._strict_accounts: set[str] = set()

    def register(self, role_arn: str, external_id: str | None) -> None:
        with self._lock:
            self._external_ids[role_arn] = external_id

    def require_existing(self, account_id: str) -> None:
        """From now on AssumeRole of a role that is not in this account's IAM is refused (as AWS refuses it)."""
        with self._lock:
            self._strict_accounts.add(account_id)

    def check(self, role_arn: str, external_id: str | None, caller_arn: str) -> None:
        """Raise AccessDenied if ``role_arn`` is registered with a different ExternalId, or does not exist in a strict account.

        AWS answers AssumeRole of a role that does not exist exactly as one whose trust policy refuses the caller
        (AccessDenied, "is not authorized to perform: sts:AssumeRole on resource"), so a caller cannot tell the two apart.
        """
        denied = STSClientError("AccessDenied", f"User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}")
        parts = role_arn.split(":")
        with self._lock:
            strict = len(parts) >= 6 and parts[4] in self._strict_accounts
            known = role_arn in self._external_ids
            expected = self._external_ids.get(role_arn)
        if strict and not _role_exists(role_arn):
            raise denied
        if known and expected is not None and external_id != expected:
            raise denied

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {arn: {"external_id": external_id} for arn, external_id in self._external_ids.items()}

    def reset(self) -> None:
        with self._lock:
            self._external_ids.clear()
            self._strict_accounts.clear()


def _role_exists(role_arn: str) -> bool:
    parts = role_arn.split(":")
    try:
        iam_backends[parts[4]][parts[1]].get_role_by_arn(role_arn)
    except Exception:  # pylint: disable=broad-except  # moto's NotFoundException, or KeyError for an odd partition
        return False
    return True


_DEFAULT_DURATION = 3600
_MIN_DURATION = 900
_MAX_DURATION = 43200


def _role_max_session(role_arn: str) -> int:
    """The role's MaxSessionDuration: moto's IAM role if it exists, else AWS's default (one hour)."""
    parts = role_arn.split(":")
    if len(parts) < 6:
        return _DEFAULT_DURATION
    partition, account = parts[1], parts[4]
    try:
        role = iam_backends[account][partition].get_role_by_arn(role_arn)
    except Exception:  # pylint: disable=broad-except  # moto raises its NotFoundException, or KeyError for an odd partition
        return _DEFAULT_DURATION
    return int(role.max_session_duration or _DEFAULT_DURATION)


def session_lifetime(settings: Settings, role_arn: str, duration: int | None, chained: bool) -> float | None:
    """How long the credentials live (None: forever, expiry off), or the ValidationError AWS answers."""
    if not (settings.credentials_expire or settings.credential_max_seconds > 0):
        return None
    requested = _DEFAULT_DURATION if duration is None else duration
    if requested < _MIN_DURATION or requested > _MAX_DURATION:
        bound = f"greater than or equal to {_MIN_DURATION}" if requested < _MIN_DURATION else f"less than or equal to {_MAX_DURATION}"
        raise STSValidationError(f"1 validation error detected: Value '{requested}' at 'durationSeconds' failed to satisfy constraint: "
                                 f"Member must have value {bound}")
    if requested > _role_max_session(role_arn):
        raise STSValidationError("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
    if chained and requested > CHAINED_MAX_SECONDS:
        raise STSValidationError("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
    if settings.credential_max_seconds > 0:
        return min(float(requested), settings.credential_max_seconds)
    return float(requested)


def assume_role(self: TokenResponse) -> ActionResult:
    state = runtime.current()
    caller_key = self.get_access_key()
    caller = f"arn:aws:iam::{self.current_account}:user/moto"
    role_arn = self._get_param("RoleArn")  # pylint: disable=protected-access
    state.roles.check(role_arn, self._get_param("ExternalId"), caller)  # pylint: disable=protected-access
    chained = state.credentials.is_temporary(caller_key)
    lifetime = session_lifetime(state.settings, role_arn, self._get_int_param("DurationSeconds"), chained)  # pylint: disable=protected-access
    result = moto_hooks.original(TokenResponse, "assume_role")(self)
    role = result.result["Credentials"]  # moto's AssumedRole, serialized after this returns
    issued = state.credentials.issue(role.access_key_id, role_arn, lifetime, chained)
    if lifetime is not None:
        role.expiration = to_datetime(issued.expires_at)
    return result


def install() -> None:
    moto_hooks.replace(TokenResponse, "assume_role", assume_role)
