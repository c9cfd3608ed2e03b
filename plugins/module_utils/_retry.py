# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Retries with jittered backoff, and a count of every AWS call made.

Modelled on amazon.aws's AWSRetry, with differences that matter for a fleet
tool:

* SSM throttles with ``ThrottlingException``, which AWSRetry's default list
  does not retry; the list below covers EC2, SSM and STS.
* Transient failures - any 5xx (EC2 ``InternalError``/``Unavailable``, SSM
  ``InternalServerError``, STS ``ServiceUnavailable``), a connection that could
  not be made or broke (``EndpointConnectionError``, ``ConnectionClosedError``),
  a read timeout - are retried only for calls without side effects
  (Describe*/List*/Get*, and ``AssumeRole``, which creates nothing).
* Writes are never blindly retried.  A ``CreateImage`` or ``SendCommand`` that
  failed like that may have been carried out: sending it again could create a
  second AMI or patch twice.  They are retried on throttling only (a throttled
  request was rejected before AWS acted on it) and on expired credentials
  (likewise rejected); after a transient failure the caller looks for what
  the call may have made (``is_transient`` tells it).
* An answer that the credentials expired (``ExpiredToken``,
  ``ExpiredTokenException``, ``RequestExpired`` - clock skew can cause one)
  makes the client ask its session for fresh credentials once and repeat the
  call once, reads and writes alike.  So does an answer that the access key
  is unknown (``InvalidClientTokenId``, ``AuthFailure``...), but only when the
  session says the credentials came from its cache (``on_invalid``).
* Before every call the cancel watch is checked (``_cancel.check``), so a
  cancelled run stops between calls in every thread; backoff sleeps are
  interruptible for the same reason.
* Every call and retry is counted per operation, so modules can report their
  API cost and tests can assert it.
* With a ``Pacer`` (``_pace.py``, given by FleetSession with the client's
  account and region), every EC2 call first waits for a token of its
  (service, account, region, action) bucket, so a fleet's calls stay within
  AWS's request rates instead of being refused and retried; a throttled answer
  slows that bucket down and the call is sent again when the bucket allows
  (the pacer's wait replaces the jittered backoff; calls of services without
  documented rates back off as before).

botocore's own retry handler is switched off for clients made here
(``total_max_attempts=1``) so that there is exactly one retry policy.
"""

import email.utils
import random
import threading
import time

from ansible_collections.cms.patching.plugins.module_utils import _cancel

try:
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    HAS_BOTOCORE = True
except ImportError:
    HAS_BOTOCORE = False

THROTTLING_CODES = frozenset(
    [
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "EC2ThrottledException",
    ]
)
# Server-side failures (EC2 InternalError/Unavailable, SSM InternalServerError, STS/S3 ServiceUnavailable...):
# the request may or may not have been carried out.
TRANSIENT_CODES = frozenset(
    [
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    ]
)
# The request was rejected because its credentials expired (ExpiredToken / ExpiredTokenException, HTTP 400/403) or its signature's
# date is too far from AWS's clock (RequestExpired): it was not carried out, whatever the operation, so it may be signed anew and
# sent again.  "Common Errors": https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html
EXPIRED_CODES = frozenset(["ExpiredToken", "ExpiredTokenException", "RequestExpired"])
# The access key is not known (STS/query services InvalidClientTokenId "The X.509 certificate or AWS access key ID provided does
# not exist in our records", https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html; EC2 AuthFailure, "Common
# client error codes", https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html; JSON services such as SSM
# UnrecognizedClientException; S3 InvalidAccessKeyId): never renewed blindly (a region not enabled answers the same), only when
# the session says the key came from its cache (a session revoked, or a sandbox reset, since the entry was written).
INVALID_TOKEN_CODES = frozenset(["InvalidClientTokenId", "AuthFailure", "UnrecognizedClientException", "InvalidAccessKeyId"])
READ_ONLY_PREFIXES = ("describe_", "list_", "get_")
# Calls that may be sent again after a server error, though their names do not say so: AssumeRole only hands out
# credentials; CreateTags sets the same keys to the same values again (EC2 "CreateTags": an existing key's value is
# overwritten); CancelCommand of a command already cancelling or done changes nothing.  A lost answer to one of these
# must never fail a phase (one 500 on the verified-at CreateTags used to fail every backup of the run).
SAFE_METHODS = frozenset(["assume_role", "create_tags", "cancel_command"])
# Methods of a botocore client that are not API calls.
_PASSTHROUGH = frozenset(["meta", "exceptions", "get_paginator", "can_paginate", "get_waiter", "close"])


_NETWORK_ERRORS = (BotoConnectionError, HTTPClientError) if HAS_BOTOCORE else ()


def error_code(exc):
    """The AWS error code of a botocore ClientError, or None."""
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code")


def is_transient(exc):
    """True when a call failed in a way that says nothing about whether AWS carried it out.

    A 5xx answer, a connection that failed or broke (botocore's ConnectionError family: EndpointConnectionError,
    ConnectTimeoutError; its HTTPClientError family: ConnectionClosedError, ReadTimeoutError): a write that failed
    like this may have taken effect, so it is never simply sent again - the caller first looks for what it may
    have made.
    """
    if HAS_BOTOCORE and isinstance(exc, _NETWORK_ERRORS):
        return True
    if error_code(exc) in TRANSIENT_CODES:
        return True
    status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return isinstance(status, int) and status >= 500 and error_code(exc) not in THROTTLING_CODES


class RetryPolicy:
    """Full-jitter exponential backoff: sleep uniform(0, min(max_delay, base * 2**attempt))."""

    def __init__(self, max_attempts=10, base_delay=1.0, max_delay=30.0, sleep=_cancel.sleep, rng=None):
        self.max_attempts = max(1, int(max_attempts))
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.sleep = sleep
        self._rng = rng or random.Random()

    def delay(self, attempt):
        return self._rng.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))


class CallStats:
    """Thread-safe counters of API calls, keyed 'service:Operation'."""

    def __init__(self):
        self._lock = threading.Lock()
        self.calls = {}
        self.retries = {}

    def _bump(self, table, key):
        with self._lock:
            table[key] = table.get(key, 0) + 1

    def call(self, key):
        self._bump(self.calls, key)

    def retry(self, key):
        self._bump(self.retries, key)

    def total(self):
        with self._lock:
            return sum(self.calls.values())

    def as_dict(self):
        with self._lock:
            return {"calls": dict(sorted(self.calls.items())), "retries": dict(sorted(self.retries.items())), "total": sum(self.calls.values())}


class ServerClock:
    """AWS's time as its own answers tell it (the HTTP ``Date`` header), never the controller's clock.

    Deadlines and look-ups that are compared with AWS timestamps (CreationDate, RequestedDateTime,
    OperationEndTime) must use this: a controller clock minutes ahead of or behind AWS would otherwise
    miss a run's own commands or end a wait early.  ``now()`` is the newest Date seen plus the
    controller's monotonic time since (Date has one-second resolution); before any answer it is None.
    """

    def __init__(self, monotonic=time.monotonic):
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._seen = None  # (server epoch seconds, monotonic when seen)

    def observe(self, response):
        headers = ((response or {}).get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        value = headers.get("date")
        if not value:
            return
        try:
            stamp = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return
        with self._lock:
            now = self._monotonic()
            # The newest estimate wins; an older answer (a slow call) must not move the clock back.
            if self._seen is None or stamp > self._seen[0] + (now - self._seen[1]):
                self._seen = (stamp, now)

    def now(self):
        with self._lock:
            if self._seen is None:
                return None
            return self._seen[0] + (self._monotonic() - self._seen[1])


# AWS refuses a request signed more than 15 minutes from its own time (RequestExpired, "Common Errors" of every AWS API
# reference); botocore does not correct the controller's clock.
SIGNATURE_WINDOW = 15 * 60


def clock_note(exc, wall=time.time):
    """' (AWS's clock ... is N minutes ahead of this controller's ...)' when the answer's Date shows the controller's clock further off
    AWS's than AWS accepts a signature; '' otherwise (no Date, or a clock close enough that the credentials are the likelier cause)."""
    response = getattr(exc, "response", None) or {}
    message = (response.get("Error") or {}).get("Message") or ""
    # The codes AWS gives a request signed at the wrong time (an expired token is ExpiredToken / ExpiredTokenException instead).
    if error_code(exc) not in ("RequestExpired", "RequestTimeTooSkewed") and "Signature expired" not in message and "not yet current" not in message:
        return ""
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    try:
        aws = email.utils.parsedate_to_datetime(headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        return ""
    offset = aws - wall()
    if abs(offset) <= SIGNATURE_WINDOW:
        return ""
    return (
        "; AWS's clock (the Date of its answer) is %d minutes %s this controller's, and AWS refuses requests signed more than %d minutes "
        "off its time: set the controller's clock right (NTP: 'timedatectl', 'chronyc tracking') and run again"
        % (round(abs(offset) / 60), "ahead of" if offset > 0 else "behind", SIGNATURE_WINDOW // 60)
    )


class RetryingClient:
    """Wraps a botocore client: every API method gets the retry policy, the call counter and the cancel check.

    ``on_expired(exc, started, again)`` is the session's answer to expired credentials: it renews them (or raises
    a FleetError saying why it cannot) and the call is made once more; ``started`` is the monotonic time the
    failed attempt began (a renewal after it already gave newer credentials), ``again`` says the renewed
    credentials were rejected too (it must raise).  ``on_invalid(exc, started)`` is asked when AWS answers that
    the access key is unknown (``INVALID_TOKEN_CODES``): True when it renewed credentials that may be stale (they
    came from the credential cache) and the call is to be made once more, False to fail with AWS's answer.
    """

    def __init__(self, client, policy, stats, server_clock=None, on_expired=None, pacer=None, scope=("", ""), on_invalid=None):
        self._client = client
        self._policy = policy
        self._stats = stats
        self._server_clock = server_clock
        self._on_expired = on_expired
        self._on_invalid = on_invalid
        self._service = client.meta.service_model.service_name
        # (account, region) of the client: AWS meters requests per account and Region, so does the pacer.
        self._pacer = pacer
        self._scope = tuple(scope)

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name in _PASSTHROUGH or name.startswith("_") or not callable(attr):
            return attr
        operation = self._client.meta.method_to_api_mapping.get(name, name)
        pace_key = (self._service,) + self._scope + (operation,)
        return self._wrap(attr, "%s:%s" % (self._service, operation), name.startswith(READ_ONLY_PREFIXES) or name in SAFE_METHODS, pace_key)

    def _wrap(self, method, key, read_only, pace_key=None):
        policy, stats, server_clock, on_expired, pacer = self._policy, self._stats, self._server_clock, self._on_expired, self._pacer
        on_invalid = self._on_invalid

        def call(**kwargs):
            attempt = 0
            renewed = False
            while True:
                paced = False  # a throttled answer whose wait the pacer takes over
                _cancel.check()
                if pacer is not None:
                    pacer.acquire(pace_key)
                started = time.monotonic()
                stats.call(key)
                try:
                    response = method(**kwargs)
                    if server_clock is not None:
                        server_clock.observe(response)
                    if pacer is not None:
                        pacer.succeeded(pace_key)
                    return response
                except ClientError as exc:
                    if server_clock is not None:
                        server_clock.observe(exc.response)  # an error answer carries AWS's Date too
                    code = error_code(exc)
                    if code in THROTTLING_CODES and pacer is not None:
                        paced = pacer.throttled(pace_key)
                    if code in EXPIRED_CODES and on_expired is not None:
                        on_expired(exc, started, renewed)
                        renewed = True
                        stats.retry(key)
                        continue  # no backoff: nothing is overloaded, the request was refused before it was carried out
                    if code in INVALID_TOKEN_CODES and on_invalid is not None and not renewed and on_invalid(exc, started):
                        renewed = True
                        stats.retry(key)
                        continue  # likewise refused before it was carried out
                    retryable = code in THROTTLING_CODES or (read_only and is_transient(exc))
                    if not retryable or attempt + 1 >= policy.max_attempts:
                        raise
                except _NETWORK_ERRORS:
                    if not read_only or attempt + 1 >= policy.max_attempts:
                        raise
                stats.retry(key)
                if not paced:
                    policy.sleep(policy.delay(attempt))
                attempt += 1

        return call


def paginate(method, result_key, **kwargs):
    """Yield every item of a NextToken-paginated call (one retried call per page)."""
    token = None
    while True:
        if token:
            kwargs["NextToken"] = token
        page = method(**kwargs)
        yield from page.get(result_key, [])
        token = page.get("NextToken")
        if not token:
            return
