"""Temporary credentials that expire on the sandbox clock, and the error a call signed with them gets.

moto hands out AssumeRole keys that never expire. With ``credentials_expire``
(or a ``credential_max_seconds`` cap) the sandbox records every key AssumeRole
issues with its expiry on the sandbox clock, so with ``time_scale`` an hour of
session passes in seconds. A call signed with an expired key is refused before
moto sees it, with the error that service gives:

- EC2: 400 ``RequestExpired`` "Request has expired." (EC2 API reference, "Common error codes");
- SSM and other JSON services: 400 ``ExpiredTokenException`` (SSM API reference, "Common Errors");
- STS and other query services: 400 ``ExpiredToken`` (STS API reference, AssumeRole / "Common Errors").

Static keys (anything AssumeRole did not issue) never expire. Keys are
recorded even with expiry off, so role chaining is recognised either way.

A temporary key (``ASIA...``) that this sandbox never issued - one issued
before a reset or by an earlier sandbox on the same port, e.g. from the
collection's credential cache - is refused as AWS refuses a key it does not
know (moto would take it as the default account's and act there):

- EC2: ``AuthFailure`` (EC2 API reference, "Common client error codes");
- SSM and other JSON services: ``UnrecognizedClientException`` "The security token included in the request is invalid.";
- S3: 403 ``InvalidAccessKeyId``;
- STS and other query services: 403 ``InvalidClientTokenId`` ("Common Errors": "The X.509 certificate or AWS access key
  ID provided does not exist in our records.").
"""

from __future__ import annotations

import dataclasses
import math
import threading
import uuid

from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.models import iam_backends
from moto.utilities.utils import PARTITION_NAMES

from sandbox.aws_request import AwsCall, _ec2_error, _json_error, _query_error, _s3_error
from sandbox.clock import Clock

# AWS caps a session assumed with temporary credentials (role chaining) at one hour.
CHAINED_MAX_SECONDS = 3600
_EXPIRED_MESSAGE = "The security token included in the request is expired"
_INVALID_MESSAGE = "The security token included in the request is invalid."


@dataclasses.dataclass(frozen=True)
class IssuedKey:
    access_key_id: str
    role_arn: str
    issued_at: float
    expires_at: float  # inf: never (expiry was off when it was issued)
    chained: bool


class CredentialStore:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, IssuedKey] = {}

    def issue(self, access_key_id: str, role_arn: str, lifetime: float | None, chained: bool) -> IssuedKey:
        """Record a key AssumeRole handed out; ``lifetime`` None: it never expires."""
        now = self._clock.now()
        key = IssuedKey(access_key_id, role_arn, now, math.inf if lifetime is None else now + lifetime, chained)
        with self._lock:
            self._keys[access_key_id] = key
        return key

    def get(self, access_key_id: str) -> IssuedKey | None:
        with self._lock:
            return self._keys.get(access_key_id)

    def is_temporary(self, access_key_id: str) -> bool:
        return self.get(access_key_id) is not None

    def expired(self, access_key_id: str) -> bool:
        key = self.get(access_key_id)
        return key is not None and self._clock.now() >= key.expires_at

    def expired_response(self, call: AwsCall) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """The (status, headers, body) refusing ``call`` if its key has expired, else None."""
        if not self.expired(call.access_key):
            return None
        return expired_response(call)

    def describe(self) -> list[dict[str, object]]:
        with self._lock:
            return [dataclasses.asdict(key) for key in self._keys.values()]

    def reset(self) -> None:
        with self._lock:
            self._keys.clear()


def unknown_key_response(call: AwsCall, account: str) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """The answer refusing ``call`` if it is signed with a temporary key moto does not know, else None.

    ``account``: moto's ``get_account_id_from`` for the key, which the middleware has already asked (any account but
    the default one means moto knows the key).
    """
    if not call.access_key.startswith("ASIA") or account != DEFAULT_ACCOUNT_ID or _known_to_moto(call.access_key):
        return None
    request_id = str(uuid.uuid4())
    if call.service == "ec2":
        return _ec2_error("401 Unauthorized", "AuthFailure", "AWS was not able to validate the provided access credentials", request_id)
    if call.json_protocol:
        return _json_error("400 Bad Request", "UnrecognizedClientException", _INVALID_MESSAGE, request_id)
    if call.service == "s3":
        return _s3_error("403 Forbidden", "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", request_id)
    return _query_error("403 Forbidden", "InvalidClientTokenId", _INVALID_MESSAGE, request_id)


def _known_to_moto(access_key: str) -> bool:
    """moto registers every key it issues (AssumeRole's included) with its IAM backends; get_account_id_from falls back to the
    default account for any other key, so the default account's keys are checked here."""
    account = iam_backends[DEFAULT_ACCOUNT_ID]
    return any(access_key in account[partition].access_keys for partition in PARTITION_NAMES)


def expired_response(call: AwsCall) -> tuple[str, list[tuple[str, str]], bytes]:
    request_id = str(uuid.uuid4())
    if call.service == "ec2":
        return _ec2_error("400 Bad Request", "RequestExpired", "Request has expired.", request_id)
    if call.json_protocol:
        return _json_error("400 Bad Request", "ExpiredTokenException", _EXPIRED_MESSAGE, request_id)
    return _query_error("400 Bad Request", "ExpiredToken", _EXPIRED_MESSAGE, request_id)
