"""Recognise an AWS API request in a WSGI environ, and answer one with a throttling or server error.

Every client talks to one endpoint (``AWS_ENDPOINT_URL``), so the service comes
from the SigV4 credential scope (``Credential=AKID/date/region/service/aws4_request``),
the operation from ``X-Amz-Target`` (JSON protocols such as SSM) or the
``Action=`` form field (query protocols: EC2, STS), and the account from the
access key, mapped the way moto maps it (assumed-role keys belong to the role's
account).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import urllib.parse
import uuid
from typing import Any

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclasses.dataclass(frozen=True)
class AwsCall:
    service: str
    operation: str
    access_key: str
    region: str
    # JSON-protocol services (SSM) name the operation in X-Amz-Target and answer errors in JSON.
    json_protocol: bool = False
    # Query-protocol parameters (first value of each form field): what token buckets look at.
    params: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        """The counter / fault key: ``ec2:CreateImage``."""
        return f"{self.service}:{self.operation}"


def classify(environ: dict[str, Any]) -> AwsCall | None:
    """The AWS call this request makes, or None if it is not a SigV4-signed AWS request."""
    match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not match:
        return None
    access_key, region, service = match.groups()
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    params: dict[str, str] = {}
    if target:
        operation = target.rpartition(".")[2]
    else:
        params = _form_fields(environ)
        operation = params.get("Action", "")
    if not operation and service.lower() == "s3":
        operation = s3_operation(environ)
    if not operation:
        return None
    return AwsCall(service=service.lower(), operation=operation, access_key=access_key, region=region, json_protocol=bool(target), params=params)


def s3_operation(environ: dict[str, Any]) -> str:
    """S3 is a REST API (no Action, no X-Amz-Target): the operation follows from the method and the path (path-style
    addressing, which botocore uses for an IP endpoint such as the sandbox's). Only what the collection and its tests
    call is named; anything else is still answered by moto, as ``s3:<METHOD>``."""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    parts = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)
    has_key = len(parts) == 2 and bool(parts[1])
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if not parts[0]:
        return "ListBuckets" if method == "GET" else method
    if has_key:
        return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method)
    if method == "GET":
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, method)


def _s3_error(status: str, code: str, message: str, request_id: str) -> Answer:
    """S3's REST error document (S3 API reference, "Error responses")."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    ).encode()
    return status, [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], body


def _ec2_error(status: str, code: str, message: str, request_id: str) -> Answer:
    """EC2's error document ("Error codes for the Amazon EC2 API")."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{request_id}</RequestID></Response>"
    ).encode()
    return status, [("Content-Type", "text/xml;charset=UTF-8"), ("x-amzn-RequestId", request_id)], body


def _json_error(status: str, code: str, message: str, request_id: str) -> Answer:
    """The JSON protocol's error (SSM, Organizations): ``__type`` and ``message``."""
    body = json.dumps({"__type": code, "message": message}).encode()
    return status, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id)], body


def _query_error(status: str, code: str, message: str, request_id: str, kind: str = "Sender") -> Answer:
    """The query protocol's ErrorResponse (STS, IAM); ``kind`` Sender (the caller's fault) or Receiver (the server's)."""
    body = (
        f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body


def _form_fields(environ: dict[str, Any]) -> dict[str, str]:
    """The query string's and form-encoded body's fields (first values); the body is put back for moto."""
    fields = {name: values[0] for name, values in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items()}
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return fields
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return fields
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    for name, values in urllib.parse.parse_qs(body.decode("utf-8", errors="replace")).items():
        fields.setdefault(name, values[0])
    return fields


Answer = tuple[str, list[tuple[str, str]], bytes]


def throttling_response(call: AwsCall) -> Answer:
    """The (status, headers, body) AWS sends when it throttles ``call``, in that service's error format."""
    request_id = str(uuid.uuid4())
    if call.service == "s3":
        # S3 throttles with 503 SlowDown ("Please reduce your request rate.").
        return _s3_error("503 Slow Down", "SlowDown", "Please reduce your request rate.", request_id)
    if call.service == "ec2":
        # EC2 throttles with 503 RequestLimitExceeded; botocore retries it as a throttle.
        return _ec2_error("503 Service Unavailable", "RequestLimitExceeded", "Request limit exceeded.", request_id)
    if call.json_protocol:
        return _json_error("400 Bad Request", "ThrottlingException", "Rate exceeded", request_id)
    # Query-protocol services (STS, IAM) answer 400 Throttling in an ErrorResponse document.
    return _query_error("400 Bad Request", "Throttling", "Rate exceeded", request_id)


def access_denied_response(call: AwsCall, account: str) -> Answer:
    """AWS's refusal of an action the caller's policy does not allow (the ``access_denied`` fault), worded as the IAM
    enforcement's (sandbox/iam_enforcement.py): EC2 403 UnauthorizedOperation, SSM (JSON) 400 AccessDeniedException,
    STS / other query services 403 AccessDenied. The principal is named by its account and access key (the sandbox does
    not resolve the key's user or role here)."""
    request_id = str(uuid.uuid4())
    action = call.key
    because = (f"User: arn:aws:iam::{account}:user/{call.access_key} is not authorized to perform: {action} "
               f"because no identity-based policy allows the {action} action")
    if call.service == "s3":
        return _s3_error("403 Forbidden", "AccessDenied", "Access Denied", request_id)
    if call.service == "ec2":
        return _ec2_error("403 Forbidden", "UnauthorizedOperation", f"You are not authorized to perform this operation. {because}", request_id)
    if call.json_protocol:
        return _json_error("400 Bad Request", "AccessDeniedException", because, request_id)
    return _query_error("403 Forbidden", "AccessDenied", because, request_id)


def server_error_response(call: AwsCall, draw: float = 0.0) -> Answer:
    """A 5xx as the service sends it: EC2 InternalError 500 or Unavailable 503 (``draw`` < 0.5 picks the first),
    SSM (JSON) InternalServerError 500, STS / other query services ServiceUnavailable 503."""
    request_id = str(uuid.uuid4())
    if call.service == "s3":
        # S3 "Error responses": InternalError 500 or ServiceUnavailable 503.
        if draw < 0.5:
            return _s3_error("500 Internal Server Error", "InternalError", "We encountered an internal error. Please try again.", request_id)
        return _s3_error("503 Service Unavailable", "ServiceUnavailable", "Reduce your request rate.", request_id)
    if call.service == "ec2":
        # "Error codes for the Amazon EC2 API": server errors.
        if draw < 0.5:
            status, code, message = "500 Internal Server Error", "InternalError", "An internal error has occurred. Retry your request."
        else:
            status, code, message = "503 Service Unavailable", "Unavailable", "The server is overloaded and can't handle the request."
        return _ec2_error(status, code, message, request_id)
    if call.json_protocol:
        # SSM API reference, common to every action: InternalServerError, HTTP 500.
        return _json_error("500 Internal Server Error", "InternalServerError", "An error occurred on the server side.", request_id)
    # STS "Common Errors": ServiceUnavailable, HTTP 503.
    return _query_error(
        "503 Service Unavailable", "ServiceUnavailable", "The request has failed due to a temporary failure of the server.", request_id, kind="Receiver"
    )
