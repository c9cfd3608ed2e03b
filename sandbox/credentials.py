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
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import uuid

from sandbox.aws_request import AwsCall
from sandbox.clock import Clock

# AWS caps a session assumed with temporary credentials (role chaining) at one hour.
CHAINED_MAX_SECONDS = 3600
_EXPIRED_MESSAGE = "The security token included in the request is expired"


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


def expired_response(call: AwsCall) -> tuple[str, list[tuple[str, str]], bytes]:
    request_id = str(uuid.uuid4())
    if call.service == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            "<Response><Errors><Error><Code>RequestExpired</Code><Message>Request has expired.</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        ).encode()
        return "400 Bad Request", [("Content-Type", "text/xml;charset=UTF-8"), ("x-amzn-RequestId", request_id)], body
    if call.json_protocol:
        body = json.dumps({"__type": "ExpiredTokenException", "message": _EXPIRED_MESSAGE}).encode()
        return "400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id)], body
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code><Message>{_EXPIRED_MESSAGE}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return "400 Bad Request", [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body
