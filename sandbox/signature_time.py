"""A request signed too far from AWS's time is refused, as AWS refuses it.

SigV4 puts the signing time in ``X-Amz-Date``. AWS refuses a request that "reached the service more than
15 minutes after the date stamp on the request ... or the date stamp on the request is more than 15 minutes in
the future" with 400 ``RequestExpired`` (the "Common Errors" page of every AWS API reference, EC2, SSM and STS
alike). botocore does not correct for clock skew, so a controller whose clock is off by more than that gets
nothing but this error.

The controller signs with its own clock; AWS's clock is the controller's plus ``clock_skew_seconds``. The
scaled part of the sandbox clock (``time_scale``) is left out on purpose: it makes waits short, it does not
make AWS's clock run away from the controller's.
"""

from __future__ import annotations

import calendar
import time
import uuid
from typing import Any

from sandbox.aws_request import Answer, AwsCall, _ec2_error, _json_error, _query_error, _s3_error

_MESSAGE = "Request has expired."


def signed_at(environ: dict[str, Any]) -> float | None:
    """The SigV4 signing time of the request (epoch seconds), or None when it carries none."""
    stamp = environ.get("HTTP_X_AMZ_DATE", "")
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


def refusal(call: AwsCall, environ: dict[str, Any], skew: float, window: float, wall: float | None = None) -> Answer | None:
    """The answer refusing the request when its signing time is more than ``window`` seconds from AWS's time, else None."""
    if window <= 0:
        return None
    signed = signed_at(environ)
    if signed is None:
        return None
    aws_now = (time.time() if wall is None else wall) + skew
    if abs(aws_now - signed) <= window:
        return None
    return response(call)


def response(call: AwsCall) -> Answer:
    request_id = str(uuid.uuid4())
    if call.service == "s3":
        # S3 has its own code for it (S3 API reference, "Error responses": RequestTimeTooSkewed, 403).
        return _s3_error("403 Forbidden", "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.", request_id)
    if call.json_protocol:
        return _json_error("400 Bad Request", "RequestExpired", _MESSAGE, request_id)
    if call.service == "ec2":
        return _ec2_error("400 Bad Request", "RequestExpired", _MESSAGE, request_id)
    return _query_error("400 Bad Request", "RequestExpired", _MESSAGE, request_id)
